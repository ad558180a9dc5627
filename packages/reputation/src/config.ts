import type { Check, CheckFactory, Clock, Logger, MemoryOrRedisStoreConfig, Site } from '@mxguard/core';
import { checkFactory, memoryOrRedisStore, stringList, z } from '@mxguard/core';
import type { RecipientValidator } from './guessing.js';
import { addressGuessing, tableValidator } from './guessing.js';
import type { ReputationOptions } from './reputation.js';
import { createReputation } from './reputation.js';
import { MemoryReputationStore } from './stores/memory.js';
import { RedisReputationStore } from './stores/redis.js';
import type { ReputationStore } from './types.js';

/** What the reputation factories need besides their plain-JSON options. */
export interface ReputationEnv {
  /** The clock scores decay by (a `ManualClock` in tests). */
  readonly clock: Clock;
  /** Where the records live, shared by `reputation` and `address-guessing`. */
  readonly store: ReputationStore;
  /** Where store failures are logged. */
  readonly log?: Logger;
  /** Recipient validator for `address-guessing`; without it, the `users` option gives a table. */
  readonly validator?: RecipientValidator;
}

/**
 * Where reputation records live, as a config file says it: `"memory"`, a `redis://` URL, or an
 * object. In memory, at most 100,000 records and 32 MiB unless `max` and `maxBytes` say otherwise.
 */
export type ReputationStoreConfig = MemoryOrRedisStoreConfig;

/** The config's `reputationStore` key: "memory", a redis:// URL, or an object. */
export const reputationStoreSchema = memoryOrRedisStore;

const prefixes = {
  ipv4Prefix: z.int().min(0).max(32).optional().describe('The network of an IPv4 client'),
  ipv6Prefix: z.int().min(0).max(128).optional().describe('The network of an IPv6 client'),
};

/** The options of `reputation`. */
export const reputationOptions = z.strictObject({
  halfLifeMs: z.number().optional().describe('How fast a network is forgiven'),
  doubt: z
    .number()
    .optional()
    .describe('Score from which the client is doubted (selective greylist). Default: 5'),
  defer: z
    .number()
    .optional()
    .describe('Score from which an address that itself offended gets 450 4.7.1. Default: 15'),
  reject: z
    .number()
    .optional()
    .describe('Score from which an address that itself offended gets 554 5.7.1. Default: 30'),
  offender: z
    .number()
    .positive()
    .optional()
    .describe('Own score from which an address may be deferred or refused (else at most doubted)'),
  greylistDelay: z
    .number()
    .optional()
    .describe('Greylist delay in seconds asked for a doubted client. Default: 900'),
  points: z
    .strictObject({
      rejection: z.number().optional().describe('Points for each 5xx from another check. Default: 1'),
      deferral: z.number().optional().describe('Points for each 4xx from another check. Default: 0'),
      greylistFailure: z
        .number()
        .optional()
        .describe('Points for a greylisted client that came back too early or from elsewhere. Default: 1'),
      accepted: z
        .number()
        .optional()
        .describe('Points for a message accepted at the end of DATA. Default: -1'),
      protocolViolation: z
        .number()
        .optional()
        .describe('Points for talking early or pipelining unannounced. Default: 1'),
    })
    .optional()
    .describe('Points each event adds to the score (negative: credit)'),
  minScore: z
    .number()
    .optional()
    .describe('Lowest score: how much credit good behaviour can bank. Default: -10'),
  maxScore: z.number().optional().describe('Highest score: bounds how long forgiveness takes. Default: 100'),
  onStoreError: z
    .enum(['next', 'defer'])
    .optional()
    .describe('What a store failure does: next (fail open) or defer (451 4.3.0). Default: next'),
  ignoreChecks: stringList
    .optional()
    .describe('Checks whose decisions never feed the record. Default: reputation, greylist'),
  ...prefixes,
});

/** The options of `address-guessing`. */
export const addressGuessingOptions = z.strictObject({
  threshold: z
    .number()
    .optional()
    .describe('Unknown recipients from one network within windowMs that trigger the lockout. Default: 10'),
  windowMs: z
    .number()
    .optional()
    .describe('The sliding window in which unknown recipients are counted, ms. Default: 600000'),
  lockoutMs: z
    .number()
    .optional()
    .describe('How long the network gets 450 4.7.1 once past the threshold, ms. Default: 3600000'),
  unknownText: z
    .string()
    .optional()
    .describe('Text of the 550 for an unknown recipient. Default: Recipient address rejected: User unknown'),
  users: stringList.optional().describe('The valid recipients (without it the check is off)'),
  ...prefixes,
});

/** Builds a reputation store from config. Throws TypeError on anything else. */
export function reputationStoreFromConfig(config: ReputationStoreConfig = 'memory'): ReputationStore {
  if (config === 'memory') return new MemoryReputationStore();
  if (typeof config === 'string') {
    if (/^rediss?:\/\//.test(config)) return new RedisReputationStore({ url: config });
    throw new TypeError(`reputation store "${config}" is neither "memory" nor a redis:// URL`);
  }
  if (config.type === 'memory')
    return new MemoryReputationStore({
      ...(config.max === undefined ? {} : { max: config.max }),
      ...(config.maxBytes === undefined ? {} : { maxBytes: config.maxBytes }),
    });
  if ('url' in config && typeof config.url === 'string' && /^rediss?:\/\//.test(config.url)) {
    return new RedisReputationStore(config.prefix === undefined ? { url: config.url } : config);
  }
  throw new TypeError('reputation store config needs "memory" or a redis:// url');
}

const NUMERIC = [
  'halfLifeMs',
  'doubt',
  'defer',
  'reject',
  'offender',
  'greylistDelay',
  'minScore',
  'maxScore',
  'ipv4Prefix',
  'ipv6Prefix',
  'threshold',
  'windowMs',
  'lockoutMs',
] as const;

function plain(
  name: string,
  options: Record<string, unknown>,
  allowed: readonly string[],
): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(options)) {
    if (!allowed.includes(k)) throw new TypeError(`${name}: unknown option "${k}"`);
    if ((NUMERIC as readonly string[]).includes(k) && typeof v !== 'number') {
      throw new TypeError(`${name}: option "${k}" must be a number`);
    }
    out[k] = v;
  }
  return out;
}

/**
 * Builds the `reputation` check from plain options (every option of `ReputationOptions` except
 * the store, clock and log, which come from `env`).
 */
export function reputationFromConfig(
  options: Record<string, unknown>,
  env: ReputationEnv,
): ReturnType<typeof createReputation> {
  const o = plain('reputation', options, [
    'halfLifeMs',
    'doubt',
    'defer',
    'reject',
    'offender',
    'greylistDelay',
    'points',
    'minScore',
    'maxScore',
    'onStoreError',
    'ignoreChecks',
    'ipv4Prefix',
    'ipv6Prefix',
  ]);
  const full = { ...o, store: env.store, clock: env.clock, log: env.log } as ReputationOptions;
  return createReputation(full);
}

/** The checks of this package by their stable names, for config files. */
export const reputationFactories: Record<string, CheckFactory<ReputationEnv>> = {
  reputation: checkFactory<ReputationEnv>(
    reputationOptions,
    (options, _site: Site, env): Check => reputationFromConfig(options, env).check,
  ),
  'address-guessing': checkFactory<ReputationEnv>(
    addressGuessingOptions,
    (options, site: Site, env): Check => {
      const o = plain('address-guessing', options, [
        'threshold',
        'windowMs',
        'lockoutMs',
        'unknownText',
        'users',
        'ipv4Prefix',
        'ipv6Prefix',
      ]);
      const { users, ...rest } = o;
      let validator = env.validator;
      if (!validator) {
        if (!Array.isArray(users) || !users.every((u) => typeof u === 'string')) {
          throw new TypeError(
            'address-guessing: needs a validator in the env or a "users" list of valid recipients',
          );
        }
        validator = tableValidator(users, site.ourDomains);
      }
      return addressGuessing({
        ...rest,
        validator,
        store: env.store,
        clock: env.clock,
        log: env.log,
      } as Parameters<typeof addressGuessing>[0]);
    },
  ),
};
