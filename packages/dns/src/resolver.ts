/**
 * The default Resolver over `node:dns`'s `Resolver` (c-ares): configurable servers, a per-query
 * timeout, bounded concurrency (p-limit), a TTL-honouring cache with negative caching (lru-cache),
 * and coalescing of identical in-flight queries. Every cache and map is bounded; time comes from
 * the injected clock, so tests never sleep.
 *
 * Deadlines (DESIGN principle 9): a lookup made inside a decision's deadline (`withDeadline`,
 * `withinBudget` of @mxguard/core) answers `temporary` (detail `DEADLINE`) when the deadline passes
 * first. A query every one of whose askers has given up is never sent if it is still queued, and
 * is cancelled if it is on the wire (each concurrency slot is its own c-ares channel, so cancelling
 * one query leaves the others alone). A query asked for by a decision without a deadline runs to
 * its own timeout.
 */
import { Resolver as NodeResolver } from 'node:dns/promises';
import type { Clock, Logger } from '@mxguard/core';
import { currentDeadline, settleBy, silentLogger, systemClock } from '@mxguard/core';
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
  /**
   * The time budget of the decisions this resolver serves, in milliseconds: `timeout` and `tries`
   * default from it (see {@link dnsTimingFor}) so that a dependent pair of lookups (PTR then its
   * A, MX then its hosts) fits in it, retry included. Absent: the c-ares-like defaults below.
   */
  readonly budget?: number;
  /** Per-try timeout in milliseconds (c-ares `timeout`). @default 2000, or from `budget` */
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
  /**
   * Bytes the answer cache may hold, as {@link answerBytes} counts them; past it the least
   * recently used answers go. An answer can be large (a TXT RRset over TCP, 64 KiB), so the entry
   * count alone allowed 10,000 × 64 KiB. An answer larger than this is returned, not cached.
   * @default 16777216 (16 MiB)
   */
  readonly cacheBytes?: number;
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
  /**
   * Told about every lookup once it has its answer: how it was answered (from the cache, by joining
   * an identical query in flight, by a query of its own, or refused for overload) and the outcome.
   * For metrics (`mxguard serve --http`); it must not throw and should be cheap.
   */
  readonly onLookup?: (event: LookupEvent) => void;
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
  /** Lookups answered `temporary` DEADLINE because their decision's deadline passed first. */
  expired: number;
  /** Queries never sent (still queued when all who asked had given up) or cancelled on the wire. */
  abandoned: number;
}

/** One lookup of the resolver, as {@link DnsResolverOptions.onLookup} is told about it. */
export interface LookupEvent {
  /** The record type asked. */
  readonly type: RecordType;
  /** The name asked (lower case, no trailing dot). */
  readonly name: string;
  /**
   * How it was answered: from the cache, by joining the same query in flight, by a query on the
   * wire, or refused at once because `maxPending` queries were waiting.
   */
  readonly via: 'cache' | 'coalesced' | 'query' | 'overload';
  /** `found`, `notfound`, `timeout` (the server's or the decision's deadline), or `error`. */
  readonly outcome: 'found' | 'notfound' | 'timeout' | 'error';
}

function outcomeOf(a: DnsResult<unknown>): LookupEvent['outcome'] {
  if (a.ok) return 'found';
  if (a.error === 'notfound') return 'notfound';
  return a.detail === 'TIMEOUT' || a.detail === DEADLINE ? 'timeout' : 'error';
}

/** Per-try timeout and tries sized from a decision's time budget. */
export interface DnsTiming {
  /** Per-try timeout in milliseconds (`DnsResolverOptions.timeout`). */
  readonly timeout: number;
  /** Tries per server (`DnsResolverOptions.tries`). */
  readonly tries: number;
}

/**
 * The resolver timing for a decision budget of `budgetMs`: two tries, and a per-try timeout of an
 * eighth of the budget (at most c-ares' 2000 ms, at least 100 ms). c-ares (1.34, Node 20) doubles
 * the timeout at each retry, so one unanswered query gives up after about three timeouts (measured
 * on loopback with a server that drops everything: 500 ms, 2 tries: 2.0 s): three eighths of the
 * budget, and the second lookup of a dependent pair still has its retry within the budget.
 */
export function dnsTimingFor(budgetMs: number): DnsTiming {
  if (!Number.isFinite(budgetMs) || budgetMs <= 0)
    throw new TypeError(`DnsResolver: budget must be a number of milliseconds > 0, got ${budgetMs}`);
  return { timeout: Math.max(100, Math.min(2000, Math.floor(budgetMs / 8))), tries: 2 };
}

/** The answer of a lookup cut short by its decision's deadline. Temporary: never cached. */
const DEADLINE = 'DEADLINE';

/** One query in flight (queued or on the wire), shared by every lookup that asked for it. */
interface Flight {
  readonly key: string;
  readonly promise: Promise<Answer>;
  /** Settles the flight (first call wins). */
  settle(answer: Answer): void;
  settled: boolean;
  /** Askers whose deadline has not passed yet. */
  live: number;
  /** An asker without a deadline joined: the query runs to its own timeout. */
  unbounded: boolean;
  /** The c-ares channel carrying the query once it is sent. */
  channel: NodeResolver | undefined;
  /** Undo the abort listeners on the askers' deadlines. */
  readonly detach: (() => void)[];
}

type Answer = DnsResult<unknown>;

/**
 * Bytes counted for one cached answer: two a character of its key and of its records as JSON (V8
 * keeps most of them in one byte a character, so this is about twice the truth), plus 128 for the
 * entry, the result object and the cache's own slots.
 */
export function answerBytes(key: string, answer: DnsResult<unknown>): number {
  const records = answer.ok ? JSON.stringify(answer.records).length : 0;
  return 128 + 2 * (key.length + records);
}

function positiveNumber(name: string, v: number | undefined, fallback: number, min = 0): number {
  if (v === undefined) return fallback;
  if (typeof v !== 'number' || !Number.isFinite(v) || v < min) {
    throw new TypeError(`DnsResolver: ${name} must be a number >= ${min}, got ${JSON.stringify(v)}`);
  }
  return v;
}

/** Maps a node:dns error code to the typed failure; unknown codes are temporary (never a 5xx). */
export function classifyDnsError(err: unknown): {
  /** `notfound` for NXDOMAIN and NODATA; `temporary` for every other code. */
  error: 'notfound' | 'temporary';
  /** The DNS name of the code (`NXDOMAIN`, `SERVFAIL`, `TIMEOUT`, ...), for the log. */
  detail: string;
} {
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
  /** Idle c-ares channels; one per concurrency slot at most, made when first needed. */
  readonly #channels: NodeResolver[] = [];
  readonly #channelOptions: { timeout: number; tries: number };
  readonly #servers: string[] | undefined;
  readonly #limit: ReturnType<typeof pLimit>;
  readonly #cache: LRUCache<string, Answer>;
  readonly #inflight = new Map<string, Flight>();
  readonly #stats: ResolverStats = {
    queries: 0,
    cacheHits: 0,
    coalesced: 0,
    failures: 0,
    notFound: 0,
    expired: 0,
    abandoned: 0,
  };
  readonly #minTtl: number;
  readonly #maxTtl: number;
  readonly #negativeTtl: number;
  readonly #defaultTtl: number;
  readonly #temporaryTtl: number;
  readonly #maxPending: number;
  readonly #onLookup: ((event: LookupEvent) => void) | undefined;
  readonly #log: Logger;

  constructor(options: DnsResolverOptions = {}) {
    const timing =
      options.budget === undefined
        ? { timeout: 2000, tries: 2 }
        : dnsTimingFor(positiveNumber('budget', options.budget, 0, 1));
    const timeout = positiveNumber('timeout', options.timeout, timing.timeout, 1);
    const tries = positiveNumber('tries', options.tries, timing.tries, 1);
    const concurrency = positiveNumber('concurrency', options.concurrency, 32, 1);
    this.#maxPending = positiveNumber('maxPending', options.maxPending, 2000, 1);
    this.#onLookup = options.onLookup;
    const cacheSize = positiveNumber('cacheSize', options.cacheSize, 10_000, 1);
    const cacheBytes = positiveNumber('cacheBytes', options.cacheBytes, 16 * 1024 * 1024, 1);
    this.#minTtl = positiveNumber('minTtl', options.minTtl, 5);
    this.#maxTtl = positiveNumber('maxTtl', options.maxTtl, 3600);
    if (this.#maxTtl < this.#minTtl) throw new TypeError('DnsResolver: maxTtl must be >= minTtl');
    this.#negativeTtl = positiveNumber('negativeTtl', options.negativeTtl, 300);
    this.#defaultTtl = positiveNumber('defaultTtl', options.defaultTtl, 300);
    this.#temporaryTtl = positiveNumber('temporaryTtl', options.temporaryTtl, 0);
    this.#log = options.log ?? silentLogger;
    const clock = options.clock ?? systemClock;
    this.#channelOptions = { timeout: Math.round(timeout), tries: Math.round(tries) };
    this.#servers = options.servers && options.servers.length > 0 ? [...options.servers] : undefined;
    // Fails here, not at the first query, on a server that is not an address.
    this.#channels.push(this.#newChannel());
    this.#limit = pLimit(Math.round(concurrency));
    // The injected clock drives expiry; no timers (ttlAutopurge off), exact expiry (ttlResolution 0).
    this.#cache = new LRUCache<string, Answer>({
      max: Math.round(cacheSize),
      maxSize: Math.round(cacheBytes),
      sizeCalculation: (answer, key) => answerBytes(key, answer),
      ttlResolution: 0,
      // +1: lru-cache takes a start time of 0 to mean "no TTL", and a ManualClock may read 0.
      perf: { now: () => clock.now() + 1 },
    });
  }

  #newChannel(): NodeResolver {
    const channel = new NodeResolver(this.#channelOptions);
    if (this.#servers) channel.setServers(this.#servers);
    return channel;
  }

  /** The per-try timeout and tries in use (sized from `budget` unless given). */
  get timing(): DnsTiming {
    return { ...this.#channelOptions };
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
    return this.#lookup('A', name, async (node, n) => {
      const rs = await node.resolve4(n, { ttl: true });
      return found(
        rs.map((r) => r.address),
        Math.min(...rs.map((r) => r.ttl)),
      );
    }) as Promise<DnsResult<string>>;
  }

  aaaa(name: string): Promise<DnsResult<string>> {
    return this.#lookup('AAAA', name, async (node, n) => {
      const rs = await node.resolve6(n, { ttl: true });
      return found(
        rs.map((r) => r.address),
        Math.min(...rs.map((r) => r.ttl)),
      );
    }) as Promise<DnsResult<string>>;
  }

  mx(name: string): Promise<DnsResult<MxRecord>> {
    return this.#lookup('MX', name, async (node, n) => {
      const rs = await node.resolveMx(n);
      const records: MxRecord[] = rs
        .map((r) => ({ priority: r.priority, exchange: r.exchange.toLowerCase().replace(/\.$/, '') }))
        .sort((x, y) => x.priority - y.priority);
      return found(records, this.#defaultTtl);
    }) as Promise<DnsResult<MxRecord>>;
  }

  ptr(ip: string): Promise<DnsResult<string>> {
    const name = ptrName(ip);
    if (name === undefined) return Promise.resolve(failed('notfound', `invalid address ${String(ip)}`));
    return this.#lookup('PTR', name, async (node, n) => {
      const rs = await node.resolvePtr(n);
      return found(
        rs.map((r) => r.toLowerCase().replace(/\.$/, '')),
        this.#defaultTtl,
      );
    }) as Promise<DnsResult<string>>;
  }

  txt(name: string): Promise<DnsResult<string>> {
    return this.#lookup('TXT', name, async (node, n) => {
      const rs = await node.resolveTxt(n);
      return found(
        rs.map((chunks) => chunks.join('')),
        this.#defaultTtl,
      );
    }) as Promise<DnsResult<string>>;
  }

  #lookup(
    type: RecordType,
    name: string,
    query: (node: NodeResolver, name: string) => Promise<Answer>,
  ): Promise<Answer> {
    const n = canonicalName(name);
    // A name that is not a valid DNS name is never sent: no query, no cache entry.
    if (n === undefined) return Promise.resolve(failed('notfound', `invalid name ${JSON.stringify(name)}`));
    const key = `${type} ${n}`;
    const onLookup = this.#onLookup;
    const told = (via: LookupEvent['via'], a: Answer): Answer => {
      try {
        onLookup?.({ type, name: n, via, outcome: outcomeOf(a) });
      } catch {
        // An observer's failure is not the lookup's.
      }
      return a;
    };
    const cached = this.#cache.get(key);
    if (cached !== undefined) {
      this.#stats.cacheHits++;
      return Promise.resolve(onLookup ? told('cache', cached) : cached);
    }
    const deadline = currentDeadline();
    const expired = (): Answer => {
      this.#stats.expired++;
      return failed('temporary', DEADLINE);
    };
    if (deadline?.aborted) return Promise.resolve(onLookup ? told('query', expired()) : expired());
    let flight = this.#inflight.get(key);
    const via = flight ? 'coalesced' : 'query';
    if (flight) this.#stats.coalesced++;
    else {
      // Queries queued or on the wire, including abandoned ones whose turn has not come yet.
      const pending = Math.max(this.#inflight.size, this.#limit.activeCount + this.#limit.pendingCount);
      if (pending >= this.#maxPending) {
        this.#stats.failures++;
        const overload = failed('temporary', 'OVERLOAD');
        return Promise.resolve(onLookup ? told('overload', overload) : overload);
      }
      flight = this.#start(key, n, query);
    }
    this.#join(flight, deadline);
    const answer = settleBy(flight.promise, deadline, expired);
    return onLookup ? answer.then((a) => told(via, a)) : answer;
  }

  /** Queues the query of `key`; it is sent when a slot is free, unless every asker gave up. */
  #start(key: string, n: string, query: (node: NodeResolver, name: string) => Promise<Answer>): Flight {
    let settle!: (a: Answer) => void;
    const promise = new Promise<Answer>((resolve) => {
      settle = resolve;
    });
    const flight: Flight = {
      key,
      promise,
      settled: false,
      live: 0,
      unbounded: false,
      channel: undefined,
      detach: [],
      settle: (answer) => {
        if (flight.settled) return;
        flight.settled = true;
        for (const undo of flight.detach.splice(0)) undo();
        if (this.#inflight.get(key) === flight) this.#inflight.delete(key);
        if (answer.ok || answer.detail !== DEADLINE) this.#store(key, answer);
        if (!answer.ok) {
          if (answer.error === 'temporary') {
            this.#stats.failures++;
            this.#log.warn({ dns: key, error: answer.detail }, 'DNS lookup failed temporarily');
          } else this.#stats.notFound++;
        }
        settle(answer);
      },
    };
    this.#inflight.set(key, flight);
    void this.#limit(async (): Promise<void> => {
      // Everyone who asked has given up while this waited in the queue: never sent.
      if (flight.settled) return;
      const channel = this.#channels.pop() ?? this.#newChannel();
      flight.channel = channel;
      this.#stats.queries++;
      let answer: Answer;
      try {
        answer = await query(channel, n);
      } catch (err) {
        const { error, detail } = classifyDnsError(err);
        answer = failed(error, detail === 'ECANCELLED' ? DEADLINE : detail);
      } finally {
        flight.channel = undefined;
        this.#channels.push(channel);
      }
      flight.settle(answer);
    });
    return flight;
  }

  /** Counts an asker of `flight`; when the last asker's deadline passes, the query is abandoned. */
  #join(flight: Flight, deadline: AbortSignal | undefined): void {
    if (!deadline) {
      flight.unbounded = true;
      return;
    }
    flight.live++;
    const onAbort = () => {
      flight.live--;
      if (flight.live > 0 || flight.unbounded || flight.settled) return;
      this.#stats.abandoned++;
      // A later asker starts afresh rather than joining a query being given up.
      if (this.#inflight.get(flight.key) === flight) this.#inflight.delete(flight.key);
      // On the wire: cancel it (its channel carries no other query). Queued: settle now, and the
      // queue skips it when its turn comes.
      if (flight.channel) flight.channel.cancel();
      else flight.settle(failed('temporary', DEADLINE));
    };
    deadline.addEventListener('abort', onAbort, { once: true });
    flight.detach.push(() => deadline.removeEventListener('abort', onAbort));
  }

  #store(key: string, answer: Answer): void {
    let ttl: number;
    if (answer.ok) ttl = Math.min(this.#maxTtl, Math.max(this.#minTtl, answer.ttl));
    else if (answer.error === 'notfound') ttl = Math.min(this.#maxTtl, this.#negativeTtl);
    else ttl = this.#temporaryTtl;
    if (ttl > 0) this.#cache.set(key, answer, { ttl: ttl * 1000 });
  }
}
