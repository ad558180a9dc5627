import type { Check, Logger, PolicyConfig, Registry, ReverseDns, Session } from '@mxguard/core';
import { bindFactories, ConfigError, next, recommended } from '@mxguard/core';
import { DnsResolver, dnsFactories, dnsSettingsFromConfig, lookupRdns, prefetch } from '@mxguard/dns';
import { type GreylistStore, greylistFactories, storeFromConfig } from '@mxguard/greylist';
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

export interface RuntimeOptions {
  /** No DNS at all. */
  readonly offline?: boolean;
  /** `HOST:PORT` of the DNS server to ask; default: the system's. */
  readonly resolver?: string;
  readonly log: Logger;
  /** Overrides the clock (tests); default: a ReplayClock over the system clock. */
  readonly clock?: ReplayClock;
}

function offlineCheck(name: string): Check {
  return {
    name,
    stage: 'connect',
    run: () => next('skipped: offline (no DNS)'),
  };
}

/**
 * Builds everything a command needs from a config: the registry of every package's checks bound
 * to their environment (resolver, stores, clock), the policy, and the notes on what is off.
 */
export async function createRuntime(config: PolicyConfig, options: RuntimeOptions): Promise<Runtime> {
  const clock = options.clock ?? new ReplayClock();
  const log = options.log;
  const notes: string[] = [];
  const closers: (() => Promise<void>)[] = [];
  const registry: Record<string, Registry[string]> = {};

  // DNS
  const dns = dnsSettingsFromConfig(config);
  let resolver: DnsResolver | undefined;
  if (options.offline) {
    for (const name of DNS_CHECKS) registry[name] = () => offlineCheck(name);
    notes.push(`offline: DNS checks skipped (${DNS_CHECKS.join(', ')}); reverse DNS not looked up`);
  } else {
    const servers = options.resolver ? [options.resolver] : dns.resolver.servers;
    resolver = new DnsResolver({ ...dns.resolver, ...(servers ? { servers } : {}), clock, log });
    Object.assign(
      registry,
      bindFactories(dnsFactories, { resolver, dnsLists: dns.dnsLists, rhsLists: dns.rhsLists }),
    );
  }

  // Greylist: in memory unless the config names a store.
  let store: GreylistStore;
  try {
    store = await storeFromConfig(config.greylist ?? 'memory', { clock, log });
  } catch (err) {
    throw new ConfigError('greylist', err instanceof Error ? err.message : String(err));
  }
  closers.push(() => store.close());
  Object.assign(registry, bindFactories(greylistFactories, { store }));

  const policy = recommended({ ...config, provided: registry, clock, log });
  if (policy.skipped.length > 0) notes.push(`not configured: ${policy.skipped.join(', ')}`);

  const r = resolver;
  const base: Runtime = {
    policy,
    clock,
    log,
    notes,
    async close() {
      for (const c of closers) await c();
    },
  };
  if (!r) return base;
  return {
    ...base,
    lookupRdns: (ip: string): Promise<ReverseDns> => lookupRdns(r, ip),
    prefetch: (session: Session) => {
      prefetch(r, session, { dnsLists: dns.dnsLists, rhsLists: dns.rhsLists, rdns: false });
    },
  };
}
