/**
 * The DNS-list checks: `dnsbl` (client IP in block lists, postscreen-style weights and threshold),
 * `dnswl` (client IP in allowlists: Postfix's permit_dnswl_client) and `rhsbl` (HELO name, sender
 * domain, verified PTR name in right-hand-side lists). Every list is queried in parallel; a
 * temporary failure is no opinion (`next`), as Postfix gives the benefit of the doubt; an error
 * answer is logged as an error of the list and never counts as a listing.
 */
import type { Check, CheckContext, Finding, HitAction, Logger, Session, Stage, Verdict } from '@mxguard/core';
import { accept, hit, next, reply, stageIndex } from '@mxguard/core';
import type { ListResult } from '../lists.js';
import { ipListKind, ListHealth, type ListKind, queryList } from '../lists.js';
import type { ListSpec } from '../listspec.js';
import { canonicalName, domainOf, normaliseIp, printable, reversedIp } from '../names.js';
import { lookupRdns } from '../rdns.js';
import type { Resolver } from '../types.js';

const sharedHealth = new WeakMap<Resolver, ListHealth>();

/**
 * The ListHealth shared by every check built on the same resolver, so each list is probed once
 * per interval whatever the number of checks using it.
 */
export function healthFor(resolver: Resolver): ListHealth {
  let h = sharedHealth.get(resolver);
  if (!h) {
    h = new ListHealth();
    sharedHealth.set(resolver, h);
  }
  return h;
}

/** Options every DNS-list check takes. */
export interface ListCheckOptions {
  /** The lists, `zone=filter*weight` as postscreen_dnsbl_sites. */
  readonly lists?: readonly (string | ListSpec)[];
  /**
   * Health probes (RFC 5782 section 5): a ListHealth, or `false` for none. A list that lists
   * 127.0.0.1 is skipped for IPv4 clients until it stops, one that lists ::FFFF:7F00:1 for IPv6
   * clients, one that lists `INVALID` for names. @default one ListHealth shared per resolver
   */
  readonly health?: ListHealth | false;
}

async function lookupAll(
  resolver: Resolver,
  lists: readonly ListSpec[],
  label: string | undefined,
  kind: ListKind,
  health: ListHealth | false,
  ctx: CheckContext,
  txt: boolean,
): Promise<ListResult[]> {
  return Promise.all(
    lists.map(async (spec): Promise<ListResult> => {
      // The probe runs beside the lookup, not before it: a session waits for one round trip.
      const [usable, result] = await Promise.all([
        health ? health.usable(resolver, spec.zone, kind, ctx.clock, ctx.log) : Promise.resolve(true),
        queryList(resolver, spec, label, { txt }),
      ]);
      if (!usable)
        return { spec, status: 'disabled', codes: [], errors: [], detail: 'failed its health probe' };
      logResult(ctx.log, result);
      return result;
    }),
  );
}

function logResult(log: Logger, r: ListResult): void {
  if (r.status === 'error') {
    log.error({ dnsList: r.spec.zone, query: r.query, answer: r.errors }, 'DNS list answered an error code');
  } else if (r.status === 'temporary') {
    log.warn({ dnsList: r.spec.zone, query: r.query, error: r.detail }, 'DNS list lookup failed temporarily');
  }
}

function summary(results: readonly ListResult[]): string {
  return results
    .map((r) => `${r.spec.zone}:${r.status}${r.codes.length ? `(${r.codes.join(',')})` : ''}`)
    .join(' ');
}

/** Applies an action to a listing: findings always travel with the verdict, for weigh(). */
function decide(
  check: string,
  action: HitAction,
  r: ReturnType<typeof reply>,
  reason: string,
  findings: Finding[],
): Verdict {
  if (action === 'score' || action === 'greylist') {
    return next(
      reason,
      findings.map((f) => (action === 'greylist' ? Object.assign({}, f, { doubt: true }) : f)),
    );
  }
  const v = hit(check, action, r, reason, findings[0]?.tag ?? 'listed', findings[0]?.score ?? 1);
  // Object.assign: a spread given keys of its own is slow in Node 20 (docs/DECISIONS.md).
  return Object.assign({}, v, { findings });
}

/** Options of `dnsbl`. */
export interface DnsblOptions extends ListCheckOptions {
  /**
   * The weighted total at or above which the client is refused (postscreen_dnsbl_threshold). Every
   * configured list counts, allowlists with their negative weight, as postscreen sums them.
   * @default 1
   */
  readonly threshold?: number;
  /**
   * What a total at or above the threshold does. `reject`: 554 5.7.1 as reject_rbl_client;
   * `defer`/`defer_if_permit`: the 4xx form of it (core's soften); `score`/`greylist`: findings `listed:<zone>` with each
   * list's weight, for weigh() or the selective greylist. @default 'reject'
   */
  readonly action?: HitAction;
}

/**
 * `dnsbl` (stage connect): the client address in DNS block lists. IPv4 is queried as reversed
 * octets, IPv6 as 32 reversed nibbles, IPv4-mapped IPv6 as IPv4. Listings add their weight; at the
 * threshold, as Postfix reject_rbl_client: `554 5.7.1 Service unavailable; Client host [ip] blocked
 * using <zone>; <TXT>`. Below it, the findings go on to weigh().
 */
export function dnsbl(resolver: Resolver, lists: readonly ListSpec[], options: DnsblOptions = {}): Check {
  const name = 'dnsbl';
  const threshold = options.threshold ?? 1;
  const action = options.action ?? 'reject';
  const health = options.health ?? healthFor(resolver);
  return {
    name,
    stage: 'connect',
    async run(session, ctx): Promise<Verdict> {
      if (lists.length === 0) return next('no DNS lists configured');
      const ip = normaliseIp(session.clientAddress);
      const label = ip === undefined ? undefined : reversedIp(ip);
      if (ip === undefined || label === undefined) return next('client address is not an IP address');
      const results = await lookupAll(resolver, lists, label, ipListKind(ip), health, ctx, true);
      const listed = results.filter((r) => r.status === 'listed');
      const findings: Finding[] = listed.map((r) => ({
        check: name,
        tag: `listed:${r.spec.zone}`,
        score: r.spec.weight,
      }));
      const total = listed.reduce((s, r) => s + r.spec.weight, 0);
      const reason = `client [${ip}] DNS lists: ${summary(results)}; total ${total} against threshold ${threshold}`;
      const blocking = listed.filter((r) => r.spec.weight > 0).sort((a, b) => b.spec.weight - a.spec.weight);
      const top = blocking[0];
      if (total < threshold || top === undefined) return next(reason, findings);
      const text = `Service unavailable; Client host [${ip}] blocked using ${top.spec.zone}${top.txt ? `; ${top.txt}` : ''}`;
      return decide(name, action, reply(554, '5.7.1', printable(text, 350)), reason, findings);
    },
  };
}

/** Options of `dnswl`. */
export interface DnswlOptions extends ListCheckOptions {
  /**
   * What an allowlisting does. `accept`: stop the chain and allow, as Postfix permit_dnswl_client
   * (place it after relay control and the checks that prove something false); `score`: a finding
   * `allowlisted:<zone>` with the list's (negative) weight for weigh(). @default 'accept'
   */
  readonly action?: 'accept' | 'score';
}

/**
 * `dnswl` (stage connect): the client address in DNS allowlists (DNSWL-style: lists with a negative
 * weight in `dnsLists`, or `lists` given to the check). An error answer (DNSWL 127.0.0.255: query
 * limit) and a temporary failure are no opinion.
 */
export function dnswl(resolver: Resolver, lists: readonly ListSpec[], options: DnswlOptions = {}): Check {
  const name = 'dnswl';
  const action = options.action ?? 'accept';
  const health = options.health ?? healthFor(resolver);
  return {
    name,
    stage: 'connect',
    async run(session, ctx): Promise<Verdict> {
      if (lists.length === 0) return next('no DNS allowlists configured');
      const ip = normaliseIp(session.clientAddress);
      const label = ip === undefined ? undefined : reversedIp(ip);
      if (ip === undefined || label === undefined) return next('client address is not an IP address');
      const results = await lookupAll(resolver, lists, label, ipListKind(ip), health, ctx, false);
      const listed = results.filter((r) => r.status === 'listed');
      const findings: Finding[] = listed.map((r) => ({
        check: name,
        tag: `allowlisted:${r.spec.zone}`,
        score: r.spec.weight,
      }));
      const reason = `client [${ip}] DNS allowlists: ${summary(results)}`;
      if (listed.length === 0) return next(reason);
      if (action === 'score') return next(reason, findings);
      return Object.assign(accept(reason), { findings });
    },
  };
}

/** What `rhsbl` looks up. */
export type RhsTarget = 'helo' | 'sender' | 'ptr';

/** Options of `rhsbl`. */
export interface RhsblOptions extends ListCheckOptions {
  /**
   * Which names are looked up: the HELO name (reject_rhsbl_helo), the MAIL FROM domain
   * (reject_rhsbl_sender), the forward-confirmed PTR name (reject_rhsbl_client).
   * @default ['helo', 'sender', 'ptr']
   */
  readonly targets?: readonly RhsTarget[];
  /** Weighted total at or above which the check fires. @default 1 */
  readonly threshold?: number;
  /** As dnsbl. @default 'reject' */
  readonly action?: HitAction;
}

const RHS_CLASS: Record<RhsTarget, string> = {
  helo: 'Helo command',
  sender: 'Sender address',
  ptr: 'Client host',
};

const RHS_STAGE: Record<RhsTarget, Stage> = { helo: 'helo', sender: 'mail', ptr: 'connect' };

/**
 * `rhsbl` (stage: the latest of its targets): names in right-hand-side block lists. Names come from
 * the client, so each is validated before any query: an invalid name means no query for it (the
 * syntax checks judge it). As Postfix: `554 5.7.1 Service unavailable; Sender address [domain]
 * blocked using <zone>; <TXT>` (Helo command / Client host for the other targets). The PTR name is
 * used only when forward-confirmed: an unconfirmed PTR is the address owner's claim, not the
 * client's, and could be anyone's domain.
 */
export function rhsbl(resolver: Resolver, lists: readonly ListSpec[], options: RhsblOptions = {}): Check {
  const name = 'rhsbl';
  const threshold = options.threshold ?? 1;
  const action = options.action ?? 'reject';
  const health = options.health ?? healthFor(resolver);
  const targets = options.targets ?? ['helo', 'sender', 'ptr'];
  for (const t of targets) {
    if (!(t in RHS_CLASS))
      throw new TypeError(`rhsbl: unknown target ${JSON.stringify(t)} (helo, sender, ptr)`);
  }
  const stage = targets.reduce<Stage>(
    (acc, t) => (stageIndex(RHS_STAGE[t]) > stageIndex(acc) ? RHS_STAGE[t] : acc),
    'connect',
  );
  return {
    name,
    stage,
    async run(session, ctx): Promise<Verdict> {
      if (lists.length === 0) return next('no right-hand-side lists configured');
      const names = await namesOf(resolver, session, targets);
      if (names.length === 0) return next('no name to look up');
      const perName = await Promise.all(
        names.map(async ({ target, value }) => ({
          target,
          value,
          results: await lookupAll(resolver, lists, value, 'name', health, ctx, true),
        })),
      );
      const hits = perName.flatMap((n) =>
        n.results.filter((r) => r.status === 'listed').map((r) => ({ target: n.target, value: n.value, r })),
      );
      const findings: Finding[] = hits.map((h) => ({
        check: name,
        tag: `listed:${h.target}:${h.r.spec.zone}`,
        score: h.r.spec.weight,
      }));
      const total = hits.reduce((s, h) => s + h.r.spec.weight, 0);
      const reason = `${perName.map((n) => `${n.target} ${n.value}: ${summary(n.results)}`).join('; ')}; total ${total} against threshold ${threshold}`;
      const top = hits
        .filter((h) => h.r.spec.weight > 0)
        .sort((a, b) => b.r.spec.weight - a.r.spec.weight)[0];
      if (total < threshold || top === undefined) return next(reason, findings);
      const text = `Service unavailable; ${RHS_CLASS[top.target]} [${top.value}] blocked using ${top.r.spec.zone}${top.r.txt ? `; ${top.r.txt}` : ''}`;
      return decide(name, action, reply(554, '5.7.1', printable(text, 350)), reason, findings);
    },
  };
}

async function namesOf(
  resolver: Resolver,
  session: Session,
  targets: readonly RhsTarget[],
): Promise<{ target: RhsTarget; value: string }[]> {
  const out: { target: RhsTarget; value: string }[] = [];
  const add = (target: RhsTarget, raw: string | undefined | null) => {
    const v = raw ? canonicalName(raw) : undefined;
    // A single label (no dot) is not a domain anyone lists; IP-looking names are literals.
    if (v === undefined || !v.includes('.') || /^[\d.]+$/.test(v)) return;
    if (!out.some((o) => o.value === v && o.target === target)) out.push({ target, value: v });
  };
  if (targets.includes('helo')) add('helo', session.helo);
  if (targets.includes('sender') && session.mailFrom) add('sender', domainOf(session.mailFrom));
  if (targets.includes('ptr')) {
    let rdns = session.rdns;
    if (!rdns || (rdns.verified === undefined && rdns.error === undefined)) {
      rdns = await lookupRdns(resolver, session.clientAddress);
    }
    if (typeof rdns.verified === 'string') add('ptr', rdns.verified);
  }
  return out;
}
