/**
 * DNS-list lookups (RFC 5782) and their health. An answer counts as a listing only when it is in
 * 127.0.0.0/8, is not a known error code, and matches the spec's filter. Error answers are logged
 * as errors of that list, never taken as listings:
 * - Spamhaus 127.255.255.0/24 (252 typo in a DQS key, 254 query via a public resolver, 255
 *   excessive queries), see https://www.spamhaus.org/faqs/domain-blocklist/#291;
 * - DNSWL 127.0.0.255 (query limit exceeded);
 * - anything outside 127.0.0.0/8: an expired list domain parked with a wildcard, or a hijack.
 */
import type { Clock, Logger } from '@mxguard/core';
import { LRUCache } from 'lru-cache';
import type { ListSpec } from './listspec.js';
import { matchesFilter } from './listspec.js';
import { joinName, normaliseIp, printable, reversedIp } from './names.js';
import type { Resolver } from './types.js';

/** What one list said about one query. */
export interface ListResult {
  /** The list asked, as configured. */
  readonly spec: ListSpec;
  /**
   * - `listed`: at least one answer counted as a listing.
   * - `clean`: not listed (NXDOMAIN, or answers the filter does not admit).
   * - `error`: the list answered only error codes (see the module doc); not a listing.
   * - `temporary`: the lookup failed (SERVFAIL, timeout): no opinion, as Postfix.
   * - `invalid`: the query name could not be built (bad name from client input): no query sent.
   * - `disabled`: the list failed its health probe and is not consulted.
   */
  readonly status: 'listed' | 'clean' | 'error' | 'temporary' | 'invalid' | 'disabled';
  /** The answers that counted as a listing. */
  readonly codes: readonly string[];
  /** The error answers, if any. */
  readonly errors: readonly string[];
  /** The list's TXT reason, when listed and asked for. */
  readonly txt?: string;
  /** The name queried. */
  readonly query?: string;
  /** Why the status, for the log (the DNS error, the bad name, the failed probe). */
  readonly detail?: string;
}

/** How an A answer of a DNS list is read. */
export function classifyListAnswer(answer: string): 'listing' | 'error' {
  const parts = answer.split('.');
  if (parts.length !== 4 || parts[0] !== '127') return 'error';
  if (parts[1] === '255' && parts[2] === '255') return 'error';
  if (parts[1] === '0' && parts[2] === '0' && parts[3] === '255') return 'error';
  return 'listing';
}

/** The query label of a client address (reversed octets / nibbles), or of a domain (as is). */
export function listLabel(kind: 'ip' | 'name', value: string): string | undefined {
  return kind === 'ip' ? reversedIp(value) : value;
}

/**
 * Looks `label` up in one list: A first, then (when listed and `txt` is set) the TXT reason of the
 * same name. A TXT failure only loses the reason.
 */
export async function queryList(
  resolver: Resolver,
  spec: ListSpec,
  label: string | undefined,
  options: { txt?: boolean } = {},
): Promise<ListResult> {
  const name = label === undefined ? undefined : joinName(label, spec.zone);
  if (name === undefined)
    return { spec, status: 'invalid', codes: [], errors: [], detail: 'invalid query name' };
  const r = await resolver.a(name);
  if (!r.ok) {
    return r.error === 'notfound'
      ? { spec, status: 'clean', codes: [], errors: [], query: name }
      : { spec, status: 'temporary', codes: [], errors: [], query: name, detail: r.detail };
  }
  const codes: string[] = [];
  const errors: string[] = [];
  for (const a of r.records) {
    if (classifyListAnswer(a) === 'error') errors.push(a);
    else if (matchesFilter(spec, a)) codes.push(a);
  }
  if (codes.length === 0) {
    return errors.length > 0
      ? { spec, status: 'error', codes, errors, query: name, detail: `error answer ${errors.join(',')}` }
      : {
          spec,
          status: 'clean',
          codes,
          errors,
          query: name,
          detail: `answer ${r.records.join(',')} not in filter`,
        };
  }
  if (!options.txt) return { spec, status: 'listed', codes, errors, query: name };
  const t = await resolver.txt(name);
  const txt = t.ok && t.records[0] !== undefined ? printable(t.records[0], 200) : undefined;
  return txt === undefined
    ? { spec, status: 'listed', codes, errors, query: name }
    : { spec, status: 'listed', codes, errors, query: name, txt };
}

/**
 * What a list is probed as: `ip` (IPv4 lookups: 127.0.0.1 / 127.0.0.2), `ip6` (IPv6 lookups:
 * ::FFFF:7F00:1 / ::FFFF:7F00:2, RFC 5782 section 5) or `name` (domain lists: INVALID / TEST).
 * One zone may serve both address families (Spamhaus ZEN does), so its IPv4 and IPv6 health are
 * kept apart: a list broken for IPv6 is disabled for IPv6 clients only.
 */
export type ListKind = 'ip' | 'ip6' | 'name';

/** The probe kind of a client address: `ip6` for IPv6 (not IPv4-mapped), else `ip`. */
export function ipListKind(ip: string): 'ip' | 'ip6' {
  return normaliseIp(ip)?.includes(':') ? 'ip6' : 'ip';
}

/**
 * The query labels of the RFC 5782 section 5 test points, for each kind. The IPv6 ones are
 * written out as nibbles because they are IPv4-mapped addresses, which `reversedIp` would query
 * as IPv4 (right for a client, wrong for a probe of the IPv6 side of a list).
 */
const PROBE_LABELS: Record<
  ListKind,
  { never: string; always: string; neverText: string; alwaysText: string }
> = {
  ip: { never: '1.0.0.127', always: '2.0.0.127', neverText: '127.0.0.1', alwaysText: '127.0.0.2' },
  ip6: {
    never: `1.0.0.0.0.0.f.7.f.f.f.f${'.0'.repeat(20)}`,
    always: `2.0.0.0.0.0.f.7.f.f.f.f${'.0'.repeat(20)}`,
    neverText: '::FFFF:7F00:1',
    alwaysText: '::FFFF:7F00:2',
  },
  name: { never: 'invalid', always: 'test', neverText: 'INVALID', alwaysText: 'TEST' },
};

/** Result of an RFC 5782 section 5 health probe. */
export interface ProbeResult {
  /** The list's zone, such as `zen.spamhaus.org`. */
  readonly zone: string;
  /** What was probed. */
  readonly kind: ListKind;
  /** The list answered for the entry that must never be listed (127.0.0.1, ::FFFF:7F00:1, `INVALID`): it lists everything. */
  readonly listsEverything: boolean;
  /** The list did not list its test entry (127.0.0.2, ::FFFF:7F00:2, `TEST`). */
  readonly missingTestEntry: boolean;
  /** The probe itself failed temporarily: nothing is known. */
  readonly temporary: boolean;
  /** What the probe saw, for the log. */
  readonly detail: string;
}

/**
 * Probes a list as RFC 5782 section 5 asks: an IPv4 list must not list 127.0.0.1 and must list
 * 127.0.0.2; an IPv6 list must not list ::FFFF:7F00:1 and must list ::FFFF:7F00:2 (queried as
 * 32 nibbles); a domain list must not list `INVALID` and must list `TEST`. A list answering for 127.0.0.1 is broken (an expired domain with a wildcard, an
 * operator "listing the world" to make people stop querying) and must be disabled.
 */
export async function probeList(
  resolver: Resolver,
  zone: string,
  kind: ListKind = 'ip',
): Promise<ProbeResult> {
  const { never, always, neverText, alwaysText } = PROBE_LABELS[kind];
  const [n, t] = await Promise.all([resolver.a(`${never}.${zone}`), resolver.a(`${always}.${zone}`)]);
  const listsEverything = n.ok && n.records.some((a) => classifyListAnswer(a) === 'listing');
  const temporary = (!n.ok && n.error === 'temporary') || (!t.ok && t.error === 'temporary');
  const missingTestEntry =
    !temporary && !(t.ok && t.records.some((a) => classifyListAnswer(a) === 'listing'));
  const detail = listsEverything
    ? `lists ${neverText} (answer ${n.ok ? n.records.join(',') : ''}): it lists everything`
    : missingTestEntry
      ? `does not list its test entry ${alwaysText}${t.ok ? ` (answer ${t.records.join(',')})` : ''}`
      : temporary
        ? 'probe failed temporarily'
        : 'healthy';
  return { zone, kind, listsEverything, missingTestEntry, temporary, detail };
}

/** Options of ListHealth. */
export interface ListHealthOptions {
  /** Milliseconds between probes of a healthy list. @default 600000 (10 minutes) */
  readonly interval?: number;
  /** Milliseconds between probes of a broken list or after a failed probe. @default 60000 */
  readonly retryInterval?: number;
  /** Zones remembered. @default 256 */
  readonly max?: number;
}

interface HealthState {
  readonly at: number;
  readonly broken: boolean;
  readonly probe: ProbeResult | undefined;
  readonly running?: Promise<boolean>;
}

/**
 * Health of DNS lists, per zone: probes each list at first use and again every `interval`, on the
 * injected clock. A list that lists 127.0.0.1 is disabled (log error, every probe while it lasts)
 * until a probe finds it fixed; one that does not list 127.0.0.2 is reported (log warn) and kept.
 * A probe that fails temporarily keeps the list in use. Bounded (lru-cache).
 */
export class ListHealth {
  readonly #states: LRUCache<string, HealthState>;
  readonly #interval: number;
  readonly #retry: number;

  constructor(options: ListHealthOptions = {}) {
    this.#interval = options.interval ?? 600_000;
    this.#retry = options.retryInterval ?? 60_000;
    this.#states = new LRUCache({ max: options.max ?? 256 });
  }

  /** The last probe of a zone, if any. */
  last(zone: string, kind: ListKind = 'ip'): ProbeResult | undefined {
    return this.#states.get(`${kind} ${zone}`)?.probe;
  }

  /** True when the list may be used now; probes it first when due (identical probes coalesce). */
  usable(resolver: Resolver, zone: string, kind: ListKind, clock: Clock, log: Logger): Promise<boolean> {
    const key = `${kind} ${zone}`;
    const now = clock.now();
    const s = this.#states.get(key);
    if (s?.running) return s.running;
    if (s) {
      const due = s.at + (s.broken || s.probe?.temporary ? this.#retry : this.#interval);
      if (now < due) return Promise.resolve(!s.broken);
    }
    const running = probeList(resolver, zone, kind).then((p) => {
      const broken = p.listsEverything;
      this.#states.set(key, { at: clock.now(), broken, probe: p });
      if (broken)
        log.error({ dnsList: zone, kind, probe: p.detail }, 'DNS list disabled: it lists everything');
      else if (s?.broken)
        log.warn({ dnsList: zone, kind }, 'DNS list re-enabled: its probe is healthy again');
      if (!broken && p.missingTestEntry)
        log.warn({ dnsList: zone, kind, probe: p.detail }, 'DNS list health');
      return !broken;
    });
    this.#states.set(key, { at: s?.at ?? now, broken: s?.broken ?? false, probe: s?.probe, running });
    return running;
  }
}

/** Is `ip` a usable address for list lookups (IPv4 or IPv6, mapped addresses as IPv4)? */
export function listableIp(ip: string): boolean {
  return normaliseIp(ip) !== undefined;
}
