/**
 * Reading the DNS part of a config file. Pure: no resolver is made here, so `mxguard check` can
 * validate a config offline. Keys (top level of the policy config):
 * - `dnsLists`: client-IP lists as postscreen_dnsbl_sites, one string each, `zone=filter*weight`
 *   (`"zen.spamhaus.org=127.0.0.[2..11]*3"`, `"list.dnswl.org=127.0.[0..255].[1..3]*-2"`);
 *   negative weights are allowlists (dnswl), all of them count toward dnsbl's threshold;
 * - `rhsLists`: right-hand-side lists for rhsbl, the same syntax;
 * - `dns`: resolver settings (`servers`, `timeout`, `tries`, `concurrency`, `cacheSize`, `cacheBytes`,
 *   `minTtl`, `maxTtl`, `negativeTtl`, `defaultTtl`, `temporaryTtl`).
 */
import { ConfigError, stringList, z } from '@mxguard/core';
import type { ListSpec } from './listspec.js';
import { parseListSpec } from './listspec.js';
import type { DnsResolverOptions } from './resolver.js';

const seconds = z.number().min(0);

/** The DNS keys of a config, for the config schema. */
export const dnsSettingsShape = {
  dns: z
    .strictObject({
      servers: z
        .array(z.string().min(1))
        .optional()
        .describe('"host" or "host:port" of the resolvers to ask'),
      timeout: seconds
        .optional()
        .describe('Per-try timeout of a query in milliseconds (default 2000, or from budget)'),
      tries: seconds.optional().describe('Tries per server before a lookup fails as temporary (default 2)'),
      concurrency: seconds
        .optional()
        .describe('Queries on the wire at once; more wait in a queue (default 32)'),
      maxPending: seconds
        .optional()
        .describe(
          'Distinct queries in flight or queued at once; past it a lookup fails at once as temporary (default 2000)',
        ),
      cacheSize: seconds
        .optional()
        .describe('Entries in the answer cache, positive and negative (default 10000)'),
      cacheBytes: seconds.optional().describe('Bytes the answer cache may hold (default 16 MiB)'),
      minTtl: seconds
        .optional()
        .describe('Seconds an answer is cached at least, whatever its TTL (default 5)'),
      maxTtl: seconds.optional().describe('Seconds an answer is cached at most (default 3600)'),
      negativeTtl: seconds
        .optional()
        .describe('Seconds a not-found answer (NXDOMAIN, NODATA) is cached (default 300)'),
      defaultTtl: seconds
        .optional()
        .describe(
          'Seconds MX, PTR and TXT answers are cached, node:dns giving no TTL for them (default 300)',
        ),
      temporaryTtl: seconds
        .optional()
        .describe('Seconds a temporary failure is cached; 0: not cached (default 0)'),
    })
    .optional()
    .describe('Resolver settings'),
  dnsLists: stringList
    .optional()
    .describe('Client-IP DNS lists as postscreen_dnsbl_sites: "zone=filter*weight" (negative: allowlist)'),
  rhsLists: stringList.optional().describe('Right-hand-side lists for rhsbl, the same syntax'),
};

/** The DNS settings of a config. */
export interface DnsSettings {
  /** The client-IP lists of `dnsLists`, parsed (none: empty). */
  readonly dnsLists: readonly ListSpec[];
  /** The right-hand-side lists of `rhsLists`, parsed (none: empty). */
  readonly rhsLists: readonly ListSpec[];
  /** Options for `new DnsResolver(...)` (clock and log are added by the caller). */
  readonly resolver: DnsResolverOptions;
}

const NUMERIC = [
  'timeout',
  'tries',
  'concurrency',
  'maxPending',
  'cacheSize',
  'cacheBytes',
  'minTtl',
  'maxTtl',
  'negativeTtl',
  'defaultTtl',
  'temporaryTtl',
] as const;

function lists(config: Readonly<Record<string, unknown>>, key: string): ListSpec[] {
  const v = config[key];
  if (v === undefined) return [];
  if (!Array.isArray(v)) throw new ConfigError(key, 'must be a list of "zone=filter*weight" strings');
  return v.map((s, i) => {
    if (typeof s !== 'string') throw new ConfigError(`${key}[${i}]`, 'must be a string "zone=filter*weight"');
    try {
      return parseListSpec(s);
    } catch (err) {
      throw new ConfigError(`${key}[${i}]`, err instanceof Error ? err.message : String(err));
    }
  });
}

/** Reads `dnsLists`, `rhsLists` and `dns` from a config object; throws ConfigError naming the key. */
export function dnsSettingsFromConfig(config: Readonly<Record<string, unknown>>): DnsSettings {
  const dns = config.dns;
  const resolver: { -readonly [K in keyof DnsResolverOptions]: DnsResolverOptions[K] } = {};
  if (dns !== undefined) {
    if (dns === null || typeof dns !== 'object' || Array.isArray(dns))
      throw new ConfigError('dns', 'must be an object');
    const d = dns as Record<string, unknown>;
    for (const key of Object.keys(d)) {
      if (key === 'servers') {
        const s = d.servers;
        if (!Array.isArray(s) || !s.every((x) => typeof x === 'string' && x.length > 0)) {
          throw new ConfigError('dns.servers', 'must be a list of "host" or "host:port" strings');
        }
        resolver.servers = s as string[];
      } else if ((NUMERIC as readonly string[]).includes(key)) {
        const n = d[key];
        if (typeof n !== 'number' || !Number.isFinite(n) || n < 0)
          throw new ConfigError(`dns.${key}`, 'must be a number >= 0');
        (resolver as Record<string, unknown>)[key] = n;
      } else {
        throw new ConfigError(`dns.${key}`, `unknown setting (known: servers, ${NUMERIC.join(', ')})`);
      }
    }
  }
  return { dnsLists: lists(config, 'dnsLists'), rhsLists: lists(config, 'rhsLists'), resolver };
}
