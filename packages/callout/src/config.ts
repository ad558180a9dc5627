import type { Check, CheckFactory, Clock, Logger, MemoryOrRedisStoreConfig, Site } from '@mxguard/core';
import { checkFactory, memoryOrRedisStore, stringList, z } from '@mxguard/core';
import type { CalloutOptions } from './callout.js';
import { callout } from './callout.js';
import { MemoryCalloutStore } from './stores/memory.js';
import { RedisCalloutStore } from './stores/redis.js';
import type { CalloutResolver, CalloutStore, Probe } from './types.js';

/** What the callout factory needs besides its plain-JSON options. */
export interface CalloutEnv {
  /** The clock of the cache and the rate limits (a `ManualClock` in tests). */
  readonly clock: Clock;
  /** Where the MX of a listed domain comes from (`@mxguard/dns`'s Resolver fits). */
  readonly resolver: CalloutResolver;
  /** Where results are cached. @default a new MemoryCalloutStore */
  readonly store?: CalloutStore;
  /** The SMTP conversation. @default smtpProbe() */
  readonly probe?: Probe;
  /** Where probes and store failures are logged. */
  readonly log?: Logger;
}

/**
 * Where callout results live, as a config file says it: `"memory"`, a `redis://` URL, or an object.
 * In memory, at most 50,000 entries and 16 MiB unless `max` and `maxBytes` say otherwise.
 */
export type CalloutStoreConfig = MemoryOrRedisStoreConfig;

/** The config's `calloutStore` key: "memory", a redis:// URL, or an object. */
export const calloutStoreSchema = memoryOrRedisStore;

/** The options of `callout` (off until `domains` names some). */
export const calloutOptions = z.strictObject({
  domains: stringList.optional().describe('The frequently forged domains whose senders are verified'),
  port: z.number().optional().describe('TCP port of probes. Default: 25'),
  helo: z.string().optional().describe('EHLO name of probes (default: the first of ourHosts)'),
  probeSender: z
    .string()
    .optional()
    .describe('MAIL FROM of probes; empty: the null sender <>. Default: empty'),
  probesPerMinute: z
    .number()
    .optional()
    .describe('Probes a listed domain may receive from us a minute. Default: 10'),
  maxInFlight: z.number().optional().describe('Probes in flight at once, all domains together. Default: 10'),
  waitMs: z
    .number()
    .optional()
    .describe(
      'How long a session waits for a probe before answering that verification is in progress. Default: 9000',
    ),
  probeTimeoutMs: z
    .number()
    .optional()
    .describe('Time after which a probe is abandoned (temporary). Default: 60000'),
  rejectCode: z
    .number()
    .optional()
    .describe('Code for a sender the MX said does not exist (unverified_sender_reject_code). Default: 450'),
  deferCode: z
    .number()
    .optional()
    .describe('The 4xx for a sender not verified yet (unverified_sender_defer_code). Default: 450'),
  tempfailAction: z
    .string()
    .optional()
    .describe(
      'What a probe that did not finish does (unverified_sender_tempfail_action); never a 5xx. Default: defer_if_permit',
    ),
  allowPrivateTargets: z
    .boolean()
    .optional()
    .describe('Allow probe targets on loopback and private networks: tests and labs only. Default: false'),
  maxMxHosts: z.number().optional().describe('MX hosts tried. Default: 3'),
  maxTargets: z.number().optional().describe('Addresses tried in total (smtp_mx_address_limit). Default: 5'),
  ipv6: z.boolean().optional().describe('Also probe the IPv6 addresses of the MX hosts. Default: true'),
  positiveExpireMs: z
    .number()
    .optional()
    .describe('A good entry is kept this long (address_verify_positive_expire_time). Default: 31 days'),
  positiveRefreshMs: z
    .number()
    .optional()
    .describe('A good entry is re-probed after this (address_verify_positive_refresh_time). Default: 7 days'),
  negativeExpireMs: z
    .number()
    .optional()
    .describe('A failed entry is kept this long (address_verify_negative_expire_time). Default: 3 days'),
  negativeRefreshMs: z
    .number()
    .optional()
    .describe(
      'An unknown-user entry is re-probed after this (address_verify_negative_refresh_time). Default: 3 hours',
    ),
  temporaryRefreshMs: z
    .number()
    .optional()
    .describe('A temporary or inconclusive entry is re-probed after this. Default: 1000 s'),
  probeTtlMs: z
    .number()
    .optional()
    .describe(
      'No second probe for an address within this time; a probe unanswered by then is lost. Default: 1000 s',
    ),
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
