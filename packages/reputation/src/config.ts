import type { Check, CheckFactory, Clock, Logger, Site } from '@mxguard/core';
import { checkFactory, storeLocation, stringList, z } from '@mxguard/core';
import type { RecipientValidator } from './guessing.js';
import { addressGuessing, tableValidator } from './guessing.js';
import type { ReputationOptions } from './reputation.js';
import { createReputation } from './reputation.js';
import { MemoryReputationStore } from './stores/memory.js';
import { RedisReputationStore } from './stores/redis.js';
import type { ReputationStore } from './types.js';

/** What the reputation factories need besides their plain-JSON options. */
export interface ReputationEnv {
  readonly clock: Clock;
  readonly store: ReputationStore;
  readonly log?: Logger;
  /** Recipient validator for `address-guessing`; without it, the `users` option gives a table. */
  readonly validator?: RecipientValidator;
}

/** Where reputation records live, as a config file says it: `"memory"`, a `redis://` URL, or an object. */
export type ReputationStoreConfig =
  | 'memory'
  | string
  | { readonly type: 'memory'; readonly max?: number; readonly maxBytes?: number }
  | { readonly type?: 'redis'; readonly url: string; readonly prefix?: string };

/** The config's `reputationStore` key: "memory", a redis:// URL, or an object. */
export const reputationStoreSchema = z.union([
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

const prefixes = {
  ipv4Prefix: z.int().min(0).max(32).optional().describe('The network of an IPv4 client'),
  ipv6Prefix: z.int().min(0).max(128).optional().describe('The network of an IPv6 client'),
};

/** The options of `reputation`. */
export const reputationOptions = z.strictObject({
  halfLifeMs: z.number().optional().describe('How fast a network is forgiven'),
  doubt: z.number().optional(),
  defer: z.number().optional(),
  reject: z.number().optional(),
  offender: z
    .number()
    .positive()
    .optional()
    .describe('Own score from which an address may be deferred or refused (else at most doubted)'),
  greylistDelay: z.number().optional(),
  points: z
    .strictObject({
      rejection: z.number().optional(),
      deferral: z.number().optional(),
      greylistFailure: z.number().optional(),
      accepted: z.number().optional(),
      protocolViolation: z.number().optional(),
    })
    .optional(),
  minScore: z.number().optional(),
  maxScore: z.number().optional(),
  onStoreError: z.enum(['next', 'defer']).optional(),
  ignoreChecks: stringList.optional(),
  ...prefixes,
});

/** The options of `address-guessing`. */
export const addressGuessingOptions = z.strictObject({
  threshold: z.number().optional(),
  windowMs: z.number().optional(),
  lockoutMs: z.number().optional(),
  unknownText: z.string().optional(),
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
