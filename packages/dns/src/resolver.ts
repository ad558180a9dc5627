/**
 * The default Resolver over `node:dns`'s `Resolver` (c-ares): configurable servers, a per-query
 * timeout, bounded concurrency (p-limit), a TTL-honouring cache with negative caching (lru-cache),
 * and coalescing of identical in-flight queries. Every cache and map is bounded; time comes from
 * the injected clock, so tests never sleep.
 */
import { Resolver as NodeResolver } from 'node:dns/promises';
import type { Clock, Logger } from '@mxguard/core';
import { silentLogger, systemClock } from '@mxguard/core';
import { LRUCache } from 'lru-cache';
import pLimit from 'p-limit';
import { canonicalName, ptrName } from './names.js';
import type { DnsResult, MxRecord, RecordType, Resolver } from './types.js';
import { failed, found } from './types.js';

/** Options of the default resolver. Every option has a default; servers default to the system's. */
export interface DnsResolverOptions {
  /**
   * Name servers as `host` or `host:port` (IPv6: `[::1]:5353`). Empty or absent: the system's
   * (/etc/resolv.conf). A local caching resolver (unbound) is what DNS-list operators ask for:
   * public resolvers are refused by Spamhaus and answer 127.255.255.254.
   */
  readonly servers?: readonly string[];
  /** Per-try timeout in milliseconds (c-ares `timeout`). @default 2000 */
  readonly timeout?: number;
  /** Tries per server before giving up (c-ares `tries`). @default 2 */
  readonly tries?: number;
  /** Queries on the wire at once; more wait in a queue (p-limit). @default 32 */
  readonly concurrency?: number;
  /**
   * Distinct queries allowed in flight or queued at once; beyond that a lookup fails at once as
   * `temporary` (detail `OVERLOAD`) rather than growing a queue without bound.
   * @default 2000
   */
  readonly maxPending?: number;
  /** Entries in the answer cache (positive and negative). @default 10000 */
  readonly cacheSize?: number;
  /** Answers are cached at least this many seconds, whatever their TTL. @default 5 */
  readonly minTtl?: number;
  /** ... and at most this many seconds. @default 3600 */
  readonly maxTtl?: number;
  /**
   * Seconds to cache a not-found answer (NXDOMAIN / NODATA). node:dns does not expose the SOA
   * minimum of RFC 2308, so this is fixed. @default 300
   */
  readonly negativeTtl?: number;
  /**
   * TTL in seconds for MX, PTR and TXT answers: node:dns gives TTLs only for A and AAAA
   * (`resolve4/6` with `{ ttl: true }`). Clamped by minTtl/maxTtl. @default 300
   */
  readonly defaultTtl?: number;
  /**
   * Seconds to cache a temporary failure (RFC 2308 section 7 allows up to 5 minutes). 0: not
   * cached; in-flight coalescing still applies. @default 0
   */
  readonly temporaryTtl?: number;
  /** @default systemClock */
  readonly clock?: Clock;
  /** @default silentLogger */
  readonly log?: Logger;
}

/** Counters since construction (or the last `resetStats()`). */
export interface ResolverStats {
  /** Queries sent to the network (one per lookup that was neither cached nor in flight). */
  queries: number;
  /** Lookups answered from the cache. */
  cacheHits: number;
  /** Lookups that joined an identical query already in flight. */
  coalesced: number;
  /** Queries that ended in a temporary failure (including OVERLOAD). */
  failures: number;
  /** Queries that ended in NXDOMAIN / NODATA. */
  notFound: number;
}

type Answer = DnsResult<unknown>;

function positiveNumber(name: string, v: number | undefined, fallback: number, min = 0): number {
  if (v === undefined) return fallback;
  if (typeof v !== 'number' || !Number.isFinite(v) || v < min) {
    throw new TypeError(`DnsResolver: ${name} must be a number >= ${min}, got ${JSON.stringify(v)}`);
  }
  return v;
}

/** Maps a node:dns error code to the typed failure; unknown codes are temporary (never a 5xx). */
export function classifyDnsError(err: unknown): { error: 'notfound' | 'temporary'; detail: string } {
  const code = (err as { code?: unknown } | null)?.code;
  switch (code) {
    case 'ENOTFOUND':
      return { error: 'notfound', detail: 'NXDOMAIN' };
    case 'ENODATA':
      return { error: 'notfound', detail: 'NODATA' };
    case 'ESERVFAIL':
      return { error: 'temporary', detail: 'SERVFAIL' };
    case 'ETIMEOUT':
      return { error: 'temporary', detail: 'TIMEOUT' };
    case 'EREFUSED':
      return { error: 'temporary', detail: 'REFUSED' };
    case 'ECONNREFUSED':
      return { error: 'temporary', detail: 'CONNREFUSED' };
    default:
      return { error: 'temporary', detail: typeof code === 'string' ? code : 'ERROR' };
  }
}

/**
 * The default resolver. One instance is meant to be shared by every session of a process: that is
 * what makes the cache and the coalescing pay (N sessions from one IP: one query a list).
 */
export class DnsResolver implements Resolver {
  readonly #node: NodeResolver;
  readonly #limit: ReturnType<typeof pLimit>;
  readonly #cache: LRUCache<string, Answer>;
  readonly #inflight = new Map<string, Promise<Answer>>();
  readonly #stats: ResolverStats = { queries: 0, cacheHits: 0, coalesced: 0, failures: 0, notFound: 0 };
  readonly #minTtl: number;
  readonly #maxTtl: number;
  readonly #negativeTtl: number;
  readonly #defaultTtl: number;
  readonly #temporaryTtl: number;
  readonly #maxPending: number;
  readonly #log: Logger;

  constructor(options: DnsResolverOptions = {}) {
    const timeout = positiveNumber('timeout', options.timeout, 2000, 1);
    const tries = positiveNumber('tries', options.tries, 2, 1);
    const concurrency = positiveNumber('concurrency', options.concurrency, 32, 1);
    this.#maxPending = positiveNumber('maxPending', options.maxPending, 2000, 1);
    const cacheSize = positiveNumber('cacheSize', options.cacheSize, 10_000, 1);
    this.#minTtl = positiveNumber('minTtl', options.minTtl, 5);
    this.#maxTtl = positiveNumber('maxTtl', options.maxTtl, 3600);
    if (this.#maxTtl < this.#minTtl) throw new TypeError('DnsResolver: maxTtl must be >= minTtl');
    this.#negativeTtl = positiveNumber('negativeTtl', options.negativeTtl, 300);
    this.#defaultTtl = positiveNumber('defaultTtl', options.defaultTtl, 300);
    this.#temporaryTtl = positiveNumber('temporaryTtl', options.temporaryTtl, 0);
    this.#log = options.log ?? silentLogger;
    const clock = options.clock ?? systemClock;
    this.#node = new NodeResolver({ timeout: Math.round(timeout), tries: Math.round(tries) });
    if (options.servers && options.servers.length > 0) this.#node.setServers([...options.servers]);
    this.#limit = pLimit(Math.round(concurrency));
    // The injected clock drives expiry; no timers (ttlAutopurge off), exact expiry (ttlResolution 0).
    this.#cache = new LRUCache<string, Answer>({
      max: Math.round(cacheSize),
      ttlResolution: 0,
      // +1: lru-cache takes a start time of 0 to mean "no TTL", and a ManualClock may read 0.
      perf: { now: () => clock.now() + 1 },
    });
  }

  /** A copy of the counters. */
  stats(): ResolverStats {
    return { ...this.#stats };
  }

  /** Zeroes the counters (benchmarks and tests). */
  resetStats(): void {
    for (const k of Object.keys(this.#stats) as (keyof ResolverStats)[]) this.#stats[k] = 0;
  }

  /** Empties the cache. */
  clearCache(): void {
    this.#cache.clear();
  }

  a(name: string): Promise<DnsResult<string>> {
    return this.#lookup('A', name, async (n) => {
      const rs = await this.#node.resolve4(n, { ttl: true });
      return found(
        rs.map((r) => r.address),
        Math.min(...rs.map((r) => r.ttl)),
      );
    }) as Promise<DnsResult<string>>;
  }

  aaaa(name: string): Promise<DnsResult<string>> {
    return this.#lookup('AAAA', name, async (n) => {
      const rs = await this.#node.resolve6(n, { ttl: true });
      return found(
        rs.map((r) => r.address),
        Math.min(...rs.map((r) => r.ttl)),
      );
    }) as Promise<DnsResult<string>>;
  }

  mx(name: string): Promise<DnsResult<MxRecord>> {
    return this.#lookup('MX', name, async (n) => {
      const rs = await this.#node.resolveMx(n);
      const records: MxRecord[] = rs
        .map((r) => ({ priority: r.priority, exchange: r.exchange.toLowerCase().replace(/\.$/, '') }))
        .sort((x, y) => x.priority - y.priority);
      return found(records, this.#defaultTtl);
    }) as Promise<DnsResult<MxRecord>>;
  }

  ptr(ip: string): Promise<DnsResult<string>> {
    const name = ptrName(ip);
    if (name === undefined) return Promise.resolve(failed('notfound', `invalid address ${String(ip)}`));
    return this.#lookup('PTR', name, async (n) => {
      const rs = await this.#node.resolvePtr(n);
      return found(
        rs.map((r) => r.toLowerCase().replace(/\.$/, '')),
        this.#defaultTtl,
      );
    }) as Promise<DnsResult<string>>;
  }

  txt(name: string): Promise<DnsResult<string>> {
    return this.#lookup('TXT', name, async (n) => {
      const rs = await this.#node.resolveTxt(n);
      return found(
        rs.map((chunks) => chunks.join('')),
        this.#defaultTtl,
      );
    }) as Promise<DnsResult<string>>;
  }

  #lookup(type: RecordType, name: string, query: (name: string) => Promise<Answer>): Promise<Answer> {
    const n = canonicalName(name);
    // A name that is not a valid DNS name is never sent: no query, no cache entry.
    if (n === undefined) return Promise.resolve(failed('notfound', `invalid name ${JSON.stringify(name)}`));
    const key = `${type} ${n}`;
    const cached = this.#cache.get(key);
    if (cached !== undefined) {
      this.#stats.cacheHits++;
      return Promise.resolve(cached);
    }
    const pending = this.#inflight.get(key);
    if (pending) {
      this.#stats.coalesced++;
      return pending;
    }
    if (this.#inflight.size >= this.#maxPending) {
      this.#stats.failures++;
      return Promise.resolve(failed('temporary', 'OVERLOAD'));
    }
    const p = this.#limit(async (): Promise<Answer> => {
      this.#stats.queries++;
      try {
        return await query(n);
      } catch (err) {
        const { error, detail } = classifyDnsError(err);
        return failed(error, detail);
      }
    }).then((answer) => {
      this.#inflight.delete(key);
      this.#store(key, answer);
      if (!answer.ok) {
        if (answer.error === 'temporary') {
          this.#stats.failures++;
          this.#log.warn({ dns: key, error: answer.detail }, 'DNS lookup failed temporarily');
        } else this.#stats.notFound++;
      }
      return answer;
    });
    this.#inflight.set(key, p);
    return p;
  }

  #store(key: string, answer: Answer): void {
    let ttl: number;
    if (answer.ok) ttl = Math.min(this.#maxTtl, Math.max(this.#minTtl, answer.ttl));
    else if (answer.error === 'notfound') ttl = Math.min(this.#maxTtl, this.#negativeTtl);
    else ttl = this.#temporaryTtl;
    if (ttl > 0) this.#cache.set(key, answer, { ttl: ttl * 1000 });
  }
}
