import type { Clock, Logger } from '@mxguard/core';
import { storeLocation, z } from '@mxguard/core';
import { memoryStore } from './memory.js';
import { redisStore } from './redis.js';
import type { GreylistStore } from './types.js';

/**
 * A greylist store as a config file writes it:
 * - `{ "store": "memory" }` (the embedded default), with optional `file` (persistence),
 *   `saveInterval` (seconds), `maxTriplets`, `maxClients`, `maxTripletBytes`, `maxClientBytes`;
 * - `{ "store": "redis://127.0.0.1:6379/0", "prefix": "mxg:" }`, with optional `commandTimeout` (ms);
 * - or the string alone: `"memory"`, `"redis://..."`.
 */
export type StoreConfig =
  | string
  | {
      /** `"memory"` or a `redis://` URL. */
      readonly store: string;
      /** Redis: the prefix of every key. */
      readonly prefix?: string;
      /** Memory: the file it is saved to and loaded from. */
      readonly file?: string;
      /** Memory: seconds between saves to `file`. */
      readonly saveInterval?: number;
      /** Memory: most triplets kept (default 100000). */
      readonly maxTriplets?: number;
      /** Memory: most auto-whitelist clients kept (default 50000). */
      readonly maxClients?: number;
      /** Memory: most bytes of triplets. */
      readonly maxTripletBytes?: number;
      /** Memory: most bytes of client records. */
      readonly maxClientBytes?: number;
      /** Redis: milliseconds a command may take. */
      readonly commandTimeout?: number;
    };

/** The config's `greylist` key: where greylist triplets live (see {@link StoreConfig}). */
export const greylistStoreSchema = z
  .union([
    storeLocation.describe('"memory" or a redis:// URL'),
    z.strictObject({
      store: storeLocation.optional().describe('"memory" (default) or a redis:// URL'),
      prefix: z.string().optional().describe('Redis key prefix'),
      file: z.string().optional().describe('Memory store: the file it is saved to and loaded from'),
      saveInterval: z.number().min(0).optional().describe('Memory store: seconds between saves'),
      maxTriplets: z
        .number()
        .int()
        .min(1)
        .optional()
        .describe('Memory store: most triplets kept (default 100000)'),
      maxClients: z
        .number()
        .int()
        .min(1)
        .optional()
        .describe('Memory store: most auto-whitelist clients kept (default 50000)'),
      maxTripletBytes: z
        .number()
        .int()
        .min(1)
        .optional()
        .describe('Memory store: most bytes of triplets (counted: 512 a triplet + 2 a key character)'),
      maxClientBytes: z
        .number()
        .int()
        .min(1)
        .optional()
        .describe('Memory store: most bytes of client records (counted: 256 a client + 2 a key character)'),
      commandTimeout: z.number().min(0).optional().describe('Redis: ms a command may take'),
    }),
  ])
  .describe('The greylist store (the greylist check options go in options.greylist)');

/** What a store made from config may use. */
export interface StoreEnv {
  /** The clock of a memory store (its TTLs and saves). @default systemClock */
  readonly clock?: Clock;
  /** Where a store logs its failures (a save, a Redis connection). */
  readonly log?: Logger;
}

/**
 * Makes a store from a config value; throws TypeError with the offending field on a bad one. A
 * memory store with a `file` is loaded from it before it is returned (a missing file is empty).
 * A Redis store is returned at once and connects in the background: until it is up, decisions
 * fail and the check applies its `onStoreError` outcome.
 */
export async function storeFromConfig(config: unknown, env: StoreEnv = {}): Promise<GreylistStore> {
  const c: Record<string, unknown> =
    typeof config === 'string'
      ? { store: config }
      : config && typeof config === 'object' && !Array.isArray(config)
        ? (config as Record<string, unknown>)
        : {};
  if (
    typeof config !== 'string' &&
    (config === null || typeof config !== 'object' || Array.isArray(config))
  ) {
    if (config !== undefined)
      throw new TypeError('greylist store: must be "memory", a redis:// URL or an object');
  }
  const kind = c.store ?? 'memory';
  if (typeof kind !== 'string') throw new TypeError('greylist store.store: must be a string');
  const num = (k: string): number | undefined => {
    const v = c[k];
    if (v === undefined) return undefined;
    if (typeof v !== 'number' || !Number.isFinite(v) || v < 0) {
      throw new TypeError(`greylist store.${k}: must be a number >= 0`);
    }
    return v;
  };
  const str = (k: string): string | undefined => {
    const v = c[k];
    if (v === undefined) return undefined;
    if (typeof v !== 'string' || v === '')
      throw new TypeError(`greylist store.${k}: must be a non-empty string`);
    return v;
  };
  if (kind === 'memory') {
    const file = str('file');
    const saveInterval = num('saveInterval');
    const maxTriplets = num('maxTriplets');
    const maxClients = num('maxClients');
    const maxTripletBytes = num('maxTripletBytes');
    const maxClientBytes = num('maxClientBytes');
    // spread: once
    const store = memoryStore({
      ...(file !== undefined ? { file } : {}),
      ...(saveInterval !== undefined ? { saveInterval: saveInterval * 1000 } : {}),
      ...(maxTriplets !== undefined ? { maxTriplets } : {}),
      ...(maxClients !== undefined ? { maxClients } : {}),
      ...(maxTripletBytes !== undefined ? { maxTripletBytes } : {}),
      ...(maxClientBytes !== undefined ? { maxClientBytes } : {}),
      ...(env.clock ? { clock: env.clock } : {}),
      ...(env.log ? { log: env.log } : {}),
    });
    if (file !== undefined) await store.load();
    return store;
  }
  if (/^rediss?:\/\//.test(kind)) {
    const prefix = str('prefix');
    const commandTimeout = num('commandTimeout');
    return redisStore({
      url: kind,
      ...(prefix !== undefined ? { prefix } : {}),
      ...(commandTimeout !== undefined ? { commandTimeout } : {}),
      ...(env.log ? { log: env.log } : {}),
    });
  }
  throw new TypeError(`greylist store.store: "${kind}" is neither "memory" nor a redis:// URL`);
}
