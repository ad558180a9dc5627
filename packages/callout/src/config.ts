import type { Check, CheckFactory, Clock, Logger, Site } from '@mxguard/core';
import { checkFactory, storeLocation, stringList, z } from '@mxguard/core';
import type { CalloutOptions } from './callout.js';
import { callout } from './callout.js';
import { MemoryCalloutStore } from './stores/memory.js';
import { RedisCalloutStore } from './stores/redis.js';
import type { CalloutResolver, CalloutStore, Probe } from './types.js';

/** What the callout factory needs besides its plain-JSON options. */
export interface CalloutEnv {
  readonly clock: Clock;
  readonly resolver: CalloutResolver;
  /** @default a new MemoryCalloutStore */
  readonly store?: CalloutStore;
  readonly probe?: Probe;
  readonly log?: Logger;
}

/** Where callout results live, as a config file says it: `"memory"`, a `redis://` URL, or an object. */
export type CalloutStoreConfig =
  | 'memory'
  | string
  | { readonly type: 'memory'; readonly max?: number; readonly maxBytes?: number }
  | { readonly type?: 'redis'; readonly url: string; readonly prefix?: string };

/** The config's `calloutStore` key: "memory", a redis:// URL, or an object. */
export const calloutStoreSchema = z.union([
  storeLocation.describe('"memory" or a redis:// URL'),
  z.strictObject({
    type: z.literal('memory'),
    max: z.number().int().min(1).optional().describe('Most entries kept'),
    maxBytes: z
      .number()
      .int()
      .min(1)
      .optional()
      .describe('Most bytes kept (counted: 256 an entry + 2 a character)'),
  }),
  z.strictObject({
    type: z.literal('redis').optional(),
    url: z.string().regex(/^rediss?:\/\//, 'must be a redis:// URL'),
    prefix: z.string().optional(),
  }),
]);

/** The options of `callout` (off until `domains` names some). */
export const calloutOptions = z.strictObject({
  domains: stringList.optional().describe('The frequently forged domains whose senders are verified'),
  port: z.number().optional(),
  helo: z.string().optional().describe('EHLO name of probes (default: the first of ourHosts)'),
  probeSender: z.string().optional(),
  probesPerMinute: z.number().optional(),
  maxInFlight: z.number().optional(),
  waitMs: z.number().optional(),
  probeTimeoutMs: z.number().optional(),
  rejectCode: z.number().optional(),
  deferCode: z.number().optional(),
  tempfailAction: z.string().optional(),
  allowPrivateTargets: z.boolean().optional(),
  maxMxHosts: z.number().optional(),
  maxTargets: z.number().optional(),
  ipv6: z.boolean().optional(),
  positiveExpireMs: z.number().optional(),
  positiveRefreshMs: z.number().optional(),
  negativeExpireMs: z.number().optional(),
  negativeRefreshMs: z.number().optional(),
  temporaryRefreshMs: z.number().optional(),
  probeTtlMs: z.number().optional(),
});

/** Builds a callout store from config. Throws TypeError on anything else. */
export function calloutStoreFromConfig(config: CalloutStoreConfig = 'memory'): CalloutStore {
  if (config === 'memory') return new MemoryCalloutStore();
  if (typeof config === 'string') {
    if (/^rediss?:\/\//.test(config)) return new RedisCalloutStore({ url: config });
    throw new TypeError(`callout store "${config}" is neither "memory" nor a redis:// URL`);
  }
  if (config.type === 'memory')
    return new MemoryCalloutStore({
      ...(config.max === undefined ? {} : { max: config.max }),
      ...(config.maxBytes === undefined ? {} : { maxBytes: config.maxBytes }),
    });
  if ('url' in config && typeof config.url === 'string' && /^rediss?:\/\//.test(config.url)) {
    return new RedisCalloutStore(config.prefix === undefined ? { url: config.url } : config);
  }
  throw new TypeError('callout store config needs "memory" or a redis:// url');
}

const OPTIONS: Record<string, 'number' | 'string' | 'boolean' | 'strings'> = {
  domains: 'strings',
  port: 'number',
  helo: 'string',
  probeSender: 'string',
  probesPerMinute: 'number',
  maxInFlight: 'number',
  waitMs: 'number',
  probeTimeoutMs: 'number',
  rejectCode: 'number',
  deferCode: 'number',
  tempfailAction: 'string',
  allowPrivateTargets: 'boolean',
  maxMxHosts: 'number',
  maxTargets: 'number',
  ipv6: 'boolean',
  positiveExpireMs: 'number',
  positiveRefreshMs: 'number',
  negativeExpireMs: 'number',
  negativeRefreshMs: 'number',
  temporaryRefreshMs: 'number',
  probeTtlMs: 'number',
};

/**
 * Builds the `callout` check from plain options. The site's own addresses are never probed; its
 * first host name is the default EHLO name of probes.
 */
export function calloutFromConfig(options: Record<string, unknown>, site: Site, env: CalloutEnv): Check {
  for (const [k, v] of Object.entries(options)) {
    const want = OPTIONS[k];
    if (!want) throw new TypeError(`callout: unknown option "${k}"`);
    const ok =
      want === 'strings' ? Array.isArray(v) && v.every((x) => typeof x === 'string') : typeof v === want;
    if (!ok)
      throw new TypeError(
        `callout: option "${k}" must be ${want === 'strings' ? 'a list of strings' : `a ${want}`}`,
      );
  }
  const o = {
    helo: site.ourHosts[0] ?? 'localhost',
    ...options,
    ourAddresses: site.ourAddresses,
    store: env.store ?? new MemoryCalloutStore(),
    clock: env.clock,
    resolver: env.resolver,
    probe: env.probe,
    log: env.log,
  } as CalloutOptions;
  return callout(o);
}

/** The checks of this package by their stable names, for config files. */
export const calloutFactories: Record<string, CheckFactory<CalloutEnv>> = {
  callout: checkFactory<CalloutEnv>(calloutOptions, calloutFromConfig),
};
