import { readFileSync, statSync } from 'node:fs';
import type { CalloutStoreConfig } from '@mxguard/callout';
import { calloutFactories, calloutStoreFromConfig } from '@mxguard/callout';
import type {
  Chain,
  Check,
  CheckFactory,
  Decision,
  Logger,
  PolicyConfig,
  Registry,
  ReverseDns,
  Session,
  TableEnv,
  Verdict,
} from '@mxguard/core';
import {
  bindFactories,
  ConfigError,
  coreFactories,
  dryRun,
  next,
  rdnsFactories,
  recommended,
  withOptions,
} from '@mxguard/core';
import {
  DnsResolver,
  dnsFactories,
  dnsSettingsFromConfig,
  FakeResolver,
  healthFor,
  lookupRdns,
  prefetch,
} from '@mxguard/dns';
import {
  type GreylistStore,
  greylistCheck,
  greylistOptions,
  greylistOptionsFromConfig,
  storeFromConfig,
} from '@mxguard/greylist';
import {
  addressGuessingOptions,
  type ReputationStoreConfig,
  reputationFactories,
  reputationFromConfig,
  reputationOptions,
  reputationStoreFromConfig,
} from '@mxguard/reputation';
import { createSignalsEnv, signalsFactories } from '@mxguard/signals';
import { type MxguardConfig, policyPart, validateConfig } from './config.js';
import type { DecisionHub } from './decisions.js';
import type { ListStatus, MxguardMetrics } from './metrics.js';
import { ReplayClock, type Runtime } from './runtime.js';

/** The checks that need DNS: offline they are present but say, in the trace, that they were skipped. */
export const DNS_CHECKS = [
  'dnsbl',
  'dnswl',
  'rhsbl',
  'fcrdns',
  'helo-resolves',
  'sender-domain',
  'recipient-domain',
] as const;

/** Options of {@link createRuntime}: the command line's DNS choice, logging and shared parts. */
export interface RuntimeOptions {
  /** No DNS at all. */
  readonly offline?: boolean;
  /** `HOST:PORT` of the DNS server to ask; default: the system's. */
  readonly resolver?: string;
  /** The runtime's logger (the checks', the stores'). */
  readonly log: Logger;
  /** Overrides the clock (tests); default: a ReplayClock over the system clock. */
  readonly clock?: ReplayClock;
  /**
   * The time budget of one decision of the command (ms): the resolver's per-try timeout and tries
   * default from it (`dnsTimingFor`) unless the config's `dns` sets them. Absent (`check`, which
   * has no caller waiting): the resolver's own defaults.
   */
  readonly budget?: number;
  /**
   * Builds every check as configured but touches nothing outside: a resolver that is never asked,
   * memory stores in place of the configured ones (`mxguard config check`).
   */
  readonly dryRun?: boolean;
  /**
   * Where the stores come from: a store with the same settings as one in the pool is shared (a
   * reload keeps the greylist, reputation and callout records), and closed with its last user.
   * @default each runtime makes and closes its own
   */
  readonly stores?: StorePool;
  /** Told about every decision of the chain (metrics, status page); kept across reloads. */
  readonly observers?: DecisionHub;
  /** Counts DNS lookups, store operations, greylist outcomes and findings on the wire. */
  readonly metrics?: MxguardMetrics;
}

/**
 * The stores of a process, shared by the runtimes built in it: a runtime asks for a store by kind
 * and settings, and gets the one already open for the same settings, or a new one. Each runtime
 * releases what it acquired when it closes; a store closes with its last user. So a reload that
 * leaves a store's settings alone keeps the store (its records, its Redis connection).
 */
export class StorePool {
  readonly #entries = new Map<string, { store: Promise<{ close(): Promise<void> }>; users: number }>();

  /** The store of `kind` with `spec`, made by `make` unless one is open; and its release. */
  async acquire<
    T extends {
      /** Closes the store (called by the release of its last user). */
      close(): Promise<void>;
    },
  >(
    kind: string,
    spec: unknown,
    make: () => Promise<T>,
  ): Promise<{
    /** The store, shared with every user of the same settings. */
    store: T;
    /** Gives it back; the last release closes it. */
    release: () => Promise<void>;
  }> {
    const key = `${kind} ${JSON.stringify(spec)}`;
    let entry = this.#entries.get(key);
    if (!entry) {
      const made = make();
      entry = { store: made, users: 0 };
      this.#entries.set(key, entry);
      // A store that could not be made is not kept: the next config tries again.
      made.catch(() => {
        if (this.#entries.get(key) === entry) this.#entries.delete(key);
      });
    }
    const e = entry;
    const store = (await e.store) as T;
    e.users++;
    let released = false;
    return {
      store,
      release: async () => {
        if (released) return;
        released = true;
        e.users--;
        if (e.users > 0) return;
        if (this.#entries.get(key) === e) this.#entries.delete(key);
        await store.close();
      },
    };
  }

  /** Stores open now (kind and settings), for tests and the log. */
  get size(): number {
    return this.#entries.size;
  }
}

/**
 * The same chain, telling the hub (when there is one) about every evaluation with its time and
 * duration; `feed` (the reputation's) is told first, in the same step, rather than by a layer of
 * its own. With neither, the chain itself.
 */
export function observedBy(
  inner: Chain,
  hub: DecisionHub | undefined,
  clock: { now(): number },
  feed?: (s: Session, d: Decision) => void,
): Chain {
  if (!hub && !feed) return inner;
  // spread: once
  return {
    ...inner,
    // A `then`, not an async function: one promise an evaluation, not two.
    evaluate(session, extra) {
      const start = hub ? performance.now() : 0;
      return inner.evaluate(session, extra).then((decision) => {
        feed?.(session, decision);
        hub?.emit({ session, decision, at: clock.now(), seconds: (performance.now() - start) / 1000 });
        return decision;
      });
    },
  };
}

function wrapConfig<T>(key: string, make: () => T): T {
  try {
    return make();
  } catch (err) {
    if (err instanceof ConfigError) throw err;
    throw new ConfigError(key, err instanceof Error ? err.message : String(err));
  }
}

async function wrapConfigAsync<T>(key: string, make: () => Promise<T>): Promise<T> {
  try {
    return await make();
  } catch (err) {
    if (err instanceof ConfigError) throw err;
    throw new ConfigError(key, err instanceof Error ? err.message : String(err));
  }
}

/**
 * Waits (a bounded time) for a store that connects in the background, so the first sessions of a
 * run are judged with the store rather than by its failure outcome. A store still down afterwards
 * is logged; its checks then apply their failure outcome until it comes up.
 */
async function whenReady(store: object, what: string, log: Logger, ms = 5000): Promise<void> {
  const ready = (store as { ready?: () => Promise<void> }).ready;
  if (typeof ready !== 'function') return;
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<'timeout'>((r) => {
    timer = setTimeout(() => r('timeout'), ms);
    timer.unref();
  });
  const outcome = await Promise.race([
    ready.call(store).then(
      () => 'ready' as const,
      () => 'timeout' as const,
    ),
    timeout,
  ]);
  clearTimeout(timer);
  if (outcome === 'timeout')
    log.warn({ store: what }, 'store not reachable yet; its checks apply their failure outcome');
}

/** What an offline check says, every time: one frozen verdict, not one a session. */
const OFFLINE: Verdict = Object.freeze(next('skipped: offline (no DNS)'));

function offlineCheck(name: string): Check {
  return {
    name,
    stage: 'connect',
    run: () => OFFLINE,
  };
}

/**
 * Builds everything a command needs from a config: the registry of every package's checks bound
 * to their environment (resolver, stores, clock), the policy, and the notes on what is off.
 */
export async function createRuntime(config: MxguardConfig, options: RuntimeOptions): Promise<Runtime> {
  validateConfig(config);
  const clock = options.clock ?? new ReplayClock();
  const log = options.log;
  const metrics = options.metrics;
  /** A store as the checks see it: counted and timed when there are metrics. */
  const measured = <T extends object>(name: string, store: T): T =>
    metrics ? metrics.instrumentStore(name, store) : store;
  const notes: string[] = [];
  const closers: (() => Promise<void>)[] = [];
  const pool = options.stores;
  /** A store made here, or the pool's one with the same settings (kept across a reload). */
  async function shared<T extends { close(): Promise<void> }>(
    kind: string,
    spec: unknown,
    make: () => Promise<T>,
  ): Promise<T> {
    if (!pool) {
      const store = await make();
      closers.push(() => store.close());
      return store;
    }
    const { store, release } = await pool.acquire(kind, spec, make);
    closers.push(release);
    return store;
  }
  const registry: Record<string, Registry[string]> = {};

  // DNS
  const dns = wrapConfig('dns', () => dnsSettingsFromConfig(config as Readonly<Record<string, unknown>>));
  let resolver: DnsResolver | undefined;
  if (options.offline) {
    for (const name of DNS_CHECKS) registry[name] = () => offlineCheck(name);
    notes.push(
      `offline: DNS checks skipped (${[...DNS_CHECKS, 'callout'].join(', ')}); reverse DNS not looked up`,
    );
  } else if (options.dryRun) {
    Object.assign(
      registry,
      bindFactories(dnsFactories, {
        resolver: new FakeResolver({}),
        dnsLists: dns.dnsLists,
        rhsLists: dns.rhsLists,
        health: false as const,
      }),
    );
  } else {
    const servers = options.resolver ? [options.resolver] : dns.resolver.servers;
    resolver = new DnsResolver({
      ...(options.budget !== undefined ? { budget: options.budget } : {}),
      ...dns.resolver,
      ...(servers ? { servers } : {}),
      clock,
      log,
      ...(metrics
        ? { onLookup: (e: Parameters<MxguardMetrics['dnsLookup']>[0]) => metrics.dnsLookup(e) }
        : {}),
    });
    Object.assign(
      registry,
      bindFactories(dnsFactories, { resolver, dnsLists: dns.dnsLists, rhsLists: dns.rhsLists }),
    );
  }

  // Reputation: one record per client network, fed by every decision of the chain.
  let reputation: ReturnType<typeof reputationFromConfig> | undefined;
  const repSpec = options.dryRun ? 'memory' : (config.reputationStore ?? 'memory');
  const repStore = await shared('reputationStore', repSpec, async () =>
    wrapConfig('reputationStore', () => reputationStoreFromConfig(repSpec as ReputationStoreConfig)),
  );
  const repEnv = { clock, store: measured('reputation', repStore), log };
  registry.reputation = withOptions(reputationOptions, (o: Record<string, unknown>) => {
    reputation = reputationFromConfig(o, repEnv);
    return reputation.check;
  });
  // address-guessing needs the list of valid recipients: in the default list it runs only when
  // its options name `users`; named in `checks`, it says what it is missing.
  const guessing = reputationFactories['address-guessing'];
  const guessingOptions = config.options?.['address-guessing'];
  const explicitChecks = (config.checks ?? []).map((c) => (typeof c === 'string' ? c : c.name));
  const omit: Record<string, string> = {};
  if (guessing && (guessingOptions?.users !== undefined || explicitChecks.includes('address-guessing'))) {
    registry['address-guessing'] = withOptions(addressGuessingOptions, (o: Record<string, unknown>, site) =>
      guessing(o, site, repEnv),
    );
  } else {
    omit['address-guessing'] = 'needs options.address-guessing.users, the valid recipients';
  }

  // Greylist: in memory unless the config names a store. A greylisted client that never retried
  // in time counts against its network's reputation.
  const greySpec = options.dryRun ? 'memory' : (config.greylist ?? 'memory');
  const store: GreylistStore = await shared('greylist', greySpec, () =>
    wrapConfigAsync('greylist', () => storeFromConfig(greySpec, { clock, log })),
  );
  const stores: Record<string, object> = { greylist: store, reputation: repStore };
  await whenReady(store, 'greylist', log);
  registry.greylist = withOptions(greylistOptions, (o: Record<string, unknown>) =>
    greylistCheck(
      { store: measured('greylist', store) },
      {
        ...greylistOptionsFromConfig(o),
        onDecision: (ev) => {
          metrics?.greylistOutcome(ev.outcome);
          if (ev.outcome === 'expired-restart' && reputation) {
            reputation.recordEvent(ev.clientAddress, 'greylist-failure').catch((err: unknown) => {
              log.error({ err: String(err) }, 'reputation: recording a greylist failure failed');
            });
          }
        },
      },
    ),
  );

  // Callout: only for the domains the config lists (off until some are), and only with DNS.
  if (resolver || options.dryRun) {
    const calloutSpec = options.dryRun ? 'memory' : (config.calloutStore ?? 'memory');
    const calloutStore = await shared('calloutStore', calloutSpec, async () =>
      wrapConfig('calloutStore', () => calloutStoreFromConfig(calloutSpec as CalloutStoreConfig)),
    );
    stores.callout = calloutStore;
    Object.assign(
      registry,
      bindFactories(calloutFactories, {
        clock,
        resolver: resolver ?? new FakeResolver({}),
        store: measured('callout', calloutStore),
        log,
      }),
    );
  } else {
    registry.callout = () => offlineCheck('callout');
  }

  // Table files (access tables, rdns-dynamic patterns) read through node:fs and followed on disk;
  // each check that reads one is kept so a SIGHUP can make it look at its file at once.
  const tableEnv: TableEnv = { fs: { statSync, readFileSync }, clock, log };
  const reloadable: { reload(): unknown }[] = [];
  const withTables = (f: CheckFactory<TableEnv | undefined>): Registry[string] => {
    const bound = (o: Record<string, unknown>, s: Parameters<Registry[string]>[1]) => {
      const c = f(o, s, tableEnv) as Check & { reload?: () => unknown };
      if (typeof c.reload === 'function') reloadable.push(c as { reload(): unknown });
      return c;
    };
    return f.options ? withOptions(f.options, bound) : bound;
  };
  for (const n of [
    'access',
    'client-access',
    'rdns-access',
    'helo-access',
    'sender-access',
    'recipient-access',
  ]) {
    const f = coreFactories[n];
    if (f) registry[n] = withTables(f);
  }
  const dyn = rdnsFactories['rdns-dynamic'];
  if (dyn) registry['rdns-dynamic'] = withTables(dyn);

  // Opt-in signals (geo, os-fingerprint, received): used only when `checks` names them. Offline,
  // `received` has no resolver and says so in its trace.
  const signals = createSignalsEnv({ clock, log, ...(resolver ? { resolver } : {}) });
  closers.push(async () => signals.close());
  Object.assign(registry, bindFactories(signalsFactories, signals));

  const built = recommended({
    ...(policyPart(config) as PolicyConfig),
    provided: registry,
    omit,
    clock,
    log,
  });
  const onDecision = (session: Session, decision: Decision) => {
    reputation?.recordOutcome(session, decision).catch((err: unknown) => {
      log.error({ err: String(err) }, 'reputation: recording an outcome failed');
    });
  };
  const mode = config.mode ?? 'enforce';
  if (mode !== 'enforce' && mode !== 'warn') {
    throw new ConfigError('mode', `must be "enforce" or "warn" (a dry run), got ${JSON.stringify(mode)}`);
  }
  // The reputation hears what the chain decided, also in a dry run: it is part of the judging.
  // The observers (metrics, status page) see what was done: in a dry run, `would` says the rest.
  // Enforcing, the reputation hears the same decision they do, in their step.
  const judging =
    mode === 'warn'
      ? observedBy(dryRun(observedBy(built.chain, undefined, clock, onDecision)), options.observers, clock)
      : observedBy(built.chain, options.observers, clock, onDecision);
  const policy = { ...built, chain: judging };
  if (mode === 'warn')
    notes.push('mode warn: a dry run, every session is judged and logged, nothing is refused');
  // An adapter's finding on the wire (early talker, pipelining without PIPELINING) is held against
  // the network when it is seen, not only if the pipelining check later refuses a command.
  const onFlag = (session: Session, flag: string) => {
    metrics?.flag(flag);
    reputation?.recordEvent(session.clientAddress, 'protocol-violation').catch((err: unknown) => {
      log.error({ err: String(err), flag }, 'reputation: recording a protocol violation failed');
    });
  };
  for (const off of policy.off) notes.push(`off: ${off.name} (${off.why})`);

  const r = resolver;
  const health = r ? healthFor(r) : undefined;
  const configured = [
    ...dns.dnsLists.flatMap((l) => [
      { zone: l.zone, kind: 'ip' as const },
      { zone: l.zone, kind: 'ip6' as const },
    ]),
    ...dns.rhsLists.map((l) => ({ zone: l.zone, kind: 'name' as const })),
  ];
  const lists = (): ListStatus[] =>
    configured.map(({ zone, kind }) => {
      const p = health?.last(zone, kind);
      return {
        list: zone,
        kind,
        state: p === undefined ? 'unprobed' : p.listsEverything ? 'disabled' : 'healthy',
      };
    });
  const base: Runtime = {
    policy,
    clock,
    log,
    notes,
    onFlag,
    stores,
    lists,
    listZones: [...new Set(configured.map((l) => l.zone))],
    reloadTables: () => {
      for (const c of reloadable) c.reload();
    },
    async close() {
      // Closing must not fail the run: a store that never came up cannot quit cleanly.
      for (const c of closers) {
        try {
          await c();
        } catch (err) {
          log.warn({ err: err instanceof Error ? err.message : String(err) }, 'closing a store failed');
        }
      }
    },
  };
  if (!r) return base;
  return {
    ...base,
    resolverTiming: r.timing,
    lookupRdns: (ip: string): Promise<ReverseDns> => lookupRdns(r, ip),
    prefetch: (session: Session) => {
      prefetch(r, session, { dnsLists: dns.dnsLists, rhsLists: dns.rhsLists, rdns: false });
    },
  };
}
