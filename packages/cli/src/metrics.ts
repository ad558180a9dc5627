import type { LookupEvent } from '@mxguard/dns';
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';
import type { DecisionEvent, DecisionHub } from './decisions.js';

/** The state of one DNS list, as `/health` and `mxguard_dns_list_health` say it. */
export type ListState = 'healthy' | 'disabled' | 'unprobed';

/** One configured DNS list (zone and kind: `ip`, `ip6` or `name`) and its health now. */
export interface ListStatus {
  /** The list's zone. */
  readonly list: string;
  /** What it lists: `ip`, `ip6` or `name`. */
  readonly kind: string;
  /** Its health by the last probe. */
  readonly state: ListState;
}

/** Options of {@link MxguardMetrics}. */
export interface MxguardMetricsOptions {
  /** Also register prom-client's process metrics (CPU, memory, event loop lag), prefixed. @default false */
  readonly defaultMetrics?: boolean;
  /** Prefix of every metric name. @default 'mxguard_' */
  readonly prefix?: string;
}

/**
 * Counts kept in a plain map on the hot path and added to a prom-client counter when it is read
 * (its `collect`, at each scrape): prom-client's `inc(labels)` hashes the label object at every
 * call, which at thousands of decisions a second is a cost the decision itself should not pay.
 * Keys are built from label values of fixed sets, so the map is bounded as the series are.
 */
class Tally<L extends string> {
  readonly #counts = new Map<string, { readonly labels: Partial<Record<L, string>>; n: number }>();

  /** One more for the series keyed `key` (its label values joined), with these labels. */
  add(key: string, labels: () => Partial<Record<L, string>>): void {
    const e = this.#counts.get(key);
    if (e) e.n++;
    else this.#counts.set(key, { labels: labels(), n: 1 });
  }

  /** Adds what was counted since the last time to `counter`. */
  flush(counter: Counter<L>): void {
    for (const e of this.#counts.values()) {
      if (e.n === 0) continue;
      counter.inc(e.labels, e.n);
      e.n = 0;
    }
  }
}

/** The label object of each stage, made once. */
/** What prom-client 15 keeps for one label set of a histogram (see {@link Bins.flush}). */
interface HistogramValues {
  readonly labels: Record<string, string | number>;
  readonly bucketValues: Record<number, number>;
  sum: number;
  count: number;
}

function sameLabels(a: Record<string, unknown>, b: Record<string, unknown>): boolean {
  const keys = Object.keys(a);
  return keys.length === Object.keys(b).length && keys.every((k) => a[k] === b[k]);
}

/**
 * A histogram's observations counted in plain arrays, one a label set, and added to the
 * prom-client histogram at each scrape (from its `collect`), as {@link Tally} does for counters:
 * prom-client's `observe` checks and hashes the labels and allocates at every call, and it is
 * called once a decision and once a store operation. Pending counts are found by a key the caller
 * makes of the label values (the stage, the store's name), as Tally's are.
 */
class Bins<L extends string> {
  readonly #bounds: readonly number[];
  readonly #pending = new Map<
    string,
    { readonly labels: Partial<Record<L, string>>; counts: number[]; sum: number; n: number }
  >();

  constructor(bounds: readonly number[]) {
    this.#bounds = bounds;
  }

  add(key: string, labels: () => Partial<Record<L, string>>, value: number): void {
    if (!Number.isFinite(value)) return;
    let p = this.#pending.get(key);
    if (p === undefined) {
      p = { labels: labels(), counts: new Array<number>(this.#bounds.length).fill(0), sum: 0, n: 0 };
      this.#pending.set(key, p);
    }
    const bounds = this.#bounds;
    let i = 0;
    while (i < bounds.length && value > (bounds[i] as number)) i++;
    // Past the last bound: counted only in +Inf, which is the count.
    if (i < bounds.length) p.counts[i] = (p.counts[i] as number) + 1;
    p.sum += value;
    p.n++;
  }

  /**
   * Adds what is pending to `h`'s own values: prom-client keeps, a label set, a count a bucket (not
   * cumulative), the sum and the count, and has no public call that adds more than one observation.
   * A layout that is not that fails the scrape loudly (the metrics tests see it).
   */
  flush(h: Histogram<L>): void {
    const values = (h as unknown as { hashMap?: Record<string, HistogramValues> }).hashMap;
    if (typeof values !== 'object' || values === null)
      throw new Error('prom-client histogram without its values: a version this code does not know');
    const find = (labels: Record<string, unknown>) =>
      Object.values(values).find((v) => sameLabels(v.labels, labels));
    for (const p of this.#pending.values()) {
      if (p.n === 0) continue;
      const labels = p.labels;
      let entry = find(labels);
      if (entry === undefined) {
        h.zero(labels);
        entry = find(labels);
      }
      if (entry === undefined || typeof entry.bucketValues !== 'object')
        throw new Error('prom-client histogram values of a layout this code does not know');
      for (let i = 0; i < this.#bounds.length; i++) {
        const b = this.#bounds[i] as number;
        entry.bucketValues[b] = (entry.bucketValues[b] ?? 0) + (p.counts[i] as number);
        p.counts[i] = 0;
      }
      entry.sum += p.sum;
      entry.count += p.n;
      p.sum = 0;
      p.n = 0;
    }
  }
}

const DECISION_BUCKETS = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];
const STORE_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5];

/** The value of `dns_list_health` for each state. */
const LIST_HEALTH_VALUE: Record<ListState, number> = { healthy: 1, disabled: 0, unprobed: -1 };

/**
 * mxguard's Prometheus metrics (prom-client), registered in a registry of the caller's choice:
 * `mxguard serve` and `mxguard policy` use their own (`--http`); an smtp-server or Haraka process
 * passes its own registry and feeds the same metrics from its hooks (see docs/operations.md).
 * Counters end in `_total`, durations are in seconds, as Prometheus' naming guide asks. Every label
 * value comes from the config or from a fixed set (check names, actions, SMTP codes, stages, list
 * zones), never from a client, so the number of series is bounded.
 */
export class MxguardMetrics {
  /** The prom-client registry the metrics are in (yours, or a new one). */
  readonly registry: Registry;
  /** `decisions_total`: decisions by check, action, code, stage and mode. */
  readonly decisions: Counter<'check' | 'action' | 'code' | 'stage' | 'mode'>;
  /** `decision_seconds`: time from the start of an evaluation to its decision. */
  readonly decisionSeconds: Histogram<'stage'>;
  /** `dns_lookups_total`: DNS lookups by list, how they were answered, and outcome. */
  readonly dnsLookups: Counter<'list' | 'via' | 'outcome'>;
  /** `dns_list_health`: each list's probe: 1 healthy, 0 disabled, -1 not probed yet. */
  readonly dnsListHealth: Gauge<'list' | 'kind'>;
  /** `store_operations_total`: store operations by store and outcome. */
  readonly storeOperations: Counter<'store' | 'outcome'>;
  /** `store_seconds`: time a store operation took. */
  readonly storeSeconds: Histogram<'store'>;
  /** `greylist_outcomes_total`: greylist outcomes. */
  readonly greylist: Counter<'outcome'>;
  /** `reputation_tiers_total`: the tier the reputation check put a client in. */
  readonly reputation: Counter<'tier'>;
  /** `connections`: open client connections. */
  readonly connections: Gauge;
  /** `client_flags_total`: findings on the wire about a client (early talker, pipelining, ...). */
  readonly flags: Counter<'flag'>;
  /** `limits_hit_total`: connection and request limits hit. */
  readonly limits: Counter<'limit'>;
  /** `reloads_total`: config reloads by outcome (ok, refused). */
  readonly reloads: Counter<'outcome'>;
  readonly #decisionTally = new Tally<'check' | 'action' | 'code' | 'stage' | 'mode'>();
  readonly #reputationTally = new Tally<'tier'>();
  readonly #greylistTally = new Tally<'outcome'>();
  readonly #storeTally = new Tally<'store' | 'outcome'>();
  readonly #lookupTally = new Tally<'list' | 'via' | 'outcome'>();
  readonly #decisionBins = new Bins<'stage'>(DECISION_BUCKETS);
  readonly #storeBins = new Bins<'store'>(STORE_BUCKETS);
  #zones: readonly string[] = [];
  #lists: (() => readonly ListStatus[]) | undefined;
  #connections: (() => number) | undefined;

  constructor(registry: Registry = new Registry(), options: MxguardMetricsOptions = {}) {
    this.registry = registry;
    const p = options.prefix ?? 'mxguard_';
    const registers = [registry];
    if (options.defaultMetrics) collectDefaultMetrics({ register: registry, prefix: p });
    const self = this;
    this.decisions = new Counter({
      name: `${p}decisions_total`,
      help: 'Decisions of the chain by the check that decided (none: no check did), action, SMTP code, stage and mode (warn: a dry run, counted as what it would have done)',
      labelNames: ['check', 'action', 'code', 'stage', 'mode'],
      registers,
      collect() {
        self.#decisionTally.flush(this);
      },
    });
    this.decisionSeconds = new Histogram({
      name: `${p}decision_seconds`,
      help: 'Time from the start of an evaluation of the chain to its decision',
      labelNames: ['stage'],
      buckets: DECISION_BUCKETS,
      registers,
      collect() {
        self.#decisionBins.flush(this);
      },
    });
    this.dnsLookups = new Counter({
      name: `${p}dns_lookups_total`,
      help: 'DNS lookups by the DNS list whose zone the name is under (none: other lookups), how they were answered (cache, coalesced with a query in flight, query, overload) and outcome (found, notfound, timeout, error)',
      labelNames: ['list', 'via', 'outcome'],
      registers,
      collect() {
        self.#lookupTally.flush(this);
      },
    });
    this.dnsListHealth = new Gauge({
      name: `${p}dns_list_health`,
      help: "Each configured DNS list's health by its RFC 5782 probe: 1 healthy, 0 disabled (it lists everything), -1 not probed yet",
      labelNames: ['list', 'kind'],
      registers,
      collect() {
        this.reset();
        for (const l of self.#lists?.() ?? [])
          this.set({ list: l.list, kind: l.kind }, LIST_HEALTH_VALUE[l.state]);
      },
    });
    this.storeOperations = new Counter({
      name: `${p}store_operations_total`,
      help: 'Operations on a store (greylist, reputation, callout) by outcome (ok, error)',
      labelNames: ['store', 'outcome'],
      registers,
      collect() {
        self.#storeTally.flush(this);
      },
    });
    this.storeSeconds = new Histogram({
      name: `${p}store_seconds`,
      help: 'Time an operation on a store took, errors included',
      labelNames: ['store'],
      buckets: STORE_BUCKETS,
      registers,
      collect() {
        self.#storeBins.flush(this);
      },
    });
    this.greylist = new Counter({
      name: `${p}greylist_outcomes_total`,
      help: 'Greylist outcomes: new, early, expired-restart, passed, whitelisted-client, allowlisted',
      labelNames: ['outcome'],
      registers,
      collect() {
        self.#greylistTally.flush(this);
      },
    });
    this.reputation = new Counter({
      name: `${p}reputation_tiers_total`,
      help: 'Decisions where the reputation check ran, by the tier it put the client in: clean, doubt (greylisted), defer, reject',
      labelNames: ['tier'],
      registers,
      collect() {
        self.#reputationTally.flush(this);
      },
    });
    this.connections = new Gauge({
      name: `${p}connections`,
      help: 'Open client connections (SMTP clients for serve, Postfix policy connections for policy)',
      registers,
      collect() {
        if (self.#connections) this.set(self.#connections());
      },
    });
    this.flags = new Counter({
      name: `${p}client_flags_total`,
      help: 'Findings on the wire about a client: earlyTalker, unauthorizedPipelining, connectionLimit, ...',
      labelNames: ['flag'],
      registers,
    });
    this.limits = new Counter({
      name: `${p}limits_hit_total`,
      help: 'Limits hit: serve: connection (per-client or total connection limits, messages per connection); policy: connections, connection-slot, request-budget, line-too-long, too-many-requests, too-many-attributes, no-equals, bad-name',
      labelNames: ['limit'],
      registers,
    });
    this.reloads = new Counter({
      name: `${p}reloads_total`,
      help: 'Reloads of the config on SIGHUP, by outcome: ok (swapped), refused (the config in force stays)',
      labelNames: ['outcome'],
      registers,
    });
  }

  /** Counts every decision the hub sees; returns the function that stops it. */
  observe(hub: DecisionHub): () => void {
    return hub.subscribe((e) => this.decision(e));
  }

  /** Counts one decision: by check, action, code, stage and mode; its latency; the reputation tier. */
  decision(e: DecisionEvent): void {
    const d = e.decision;
    const shown = d.would ?? d;
    const check = shown.check ?? 'none';
    const action = shown.action;
    const code = shown.reply ? String(shown.reply.code) : '';
    const stage = e.session.stage;
    const mode = d.would ? 'warn' : 'enforce';
    this.#decisionTally.add(`${check} ${action} ${code} ${stage} ${mode}`, () => ({
      check,
      action,
      code,
      stage,
      mode,
    }));
    this.#decisionBins.add(stage, () => ({ stage }), e.seconds);
    for (const step of d.trace) {
      if (step.check !== 'reputation' || step.action === 'skip') continue;
      const tier =
        step.action === 'reject' || step.action === 'defer'
          ? step.action
          : step.findings?.some((f) => f.doubt)
            ? 'doubt'
            : 'clean';
      this.#reputationTally.add(tier, () => ({ tier }));
    }
  }

  /** Counts a greylist outcome (the greylist check's `onDecision`). */
  greylistOutcome(outcome: string): void {
    this.#greylistTally.add(outcome, () => ({ outcome }));
  }

  /** Counts a finding on the wire (an adapter's `onFlag`); a connection limit is a limit hit too. */
  flag(flag: string): void {
    this.flags.inc({ flag });
    if (flag === 'connectionLimit') this.limits.inc({ limit: 'connection' });
  }

  /** The zones of the configured DNS lists, so that lookups are counted by list. */
  setLists(zones: readonly string[]): void {
    this.#zones = [...zones].map((z) => z.toLowerCase().replace(/\.$/, ''));
  }

  /** Counts a DNS lookup (DnsResolver's `onLookup`) under the list whose zone holds the name. */
  dnsLookup(e: LookupEvent): void {
    const name = e.name;
    const list = this.#zones.find((z) => name === z || name.endsWith(`.${z}`)) ?? 'none';
    const { via, outcome } = e;
    this.#lookupTally.add(`${list} ${via} ${outcome}`, () => ({ list, via, outcome }));
  }

  /** Where the DNS-list health gauge reads from at each scrape. */
  watchLists(lists: () => readonly ListStatus[]): void {
    this.#lists = lists;
  }

  /** Where the connection gauge reads from at each scrape. */
  watchConnections(count: () => number): void {
    this.#connections = count;
  }

  /**
   * The same store, with each of its operations (every method, `close` and `ready` aside: one that
   * returns a promise when it settles, one that answers at once when it returns) counted and timed
   * under `name`. The store's behaviour is unchanged.
   */
  instrumentStore<T extends object>(name: string, store: T): T {
    const tally = this.#storeTally;
    const seconds = this.#storeBins;
    const labels = () => ({ store: name });
    const ok = () => ({ store: name, outcome: 'ok' });
    const okKey = `${name} ok`;
    const failedKey = `${name} error`;
    const failed = () => ({ store: name, outcome: 'error' });
    /** One operation that began at `start`, done: counted by outcome and timed. */
    const done = (succeeded: boolean, start: number) => {
      if (succeeded) tally.add(okKey, ok);
      else tally.add(failedKey, failed);
      seconds.add(name, labels, (performance.now() - start) / 1000);
    };
    // One wrapper a method, made at its first use, not one a call.
    const wrappers = new Map<PropertyKey, unknown>();
    return new Proxy(store, {
      get(target, prop, receiver) {
        const v = Reflect.get(target, prop, receiver) as unknown;
        if (typeof v !== 'function' || prop === 'close' || prop === 'ready' || prop === 'constructor')
          return v;
        const known = wrappers.get(prop) as { of: unknown; fn: unknown } | undefined;
        if (known?.of === v) return known.fn;
        const fn = function (this: unknown, ...args: unknown[]) {
          const start = performance.now();
          let r: unknown;
          try {
            r = (v as (...a: unknown[]) => unknown).apply(target, args);
          } catch (err) {
            done(false, start);
            throw err;
          }
          // A method that answers at once (a memory store's `scoreNow`) is counted as it returns.
          if (!(r instanceof Promise)) {
            done(true, start);
            return r;
          }
          return r.then(
            (value) => {
              done(true, start);
              return value;
            },
            (err: unknown) => {
              done(false, start);
              throw err;
            },
          );
        };
        wrappers.set(prop, { of: v, fn });
        return fn;
      },
    });
  }
}
