/**
 * @mxguard/redis: the one Redis connection policy of mxguard's stores (greylist, callout cache,
 * reputation). A store that is down must become its configured failure outcome at once, never
 * hold an SMTP session, and come back by itself when Redis does.
 *
 * @packageDocumentation
 * @module @mxguard/redis
 */
import { createHash } from 'node:crypto';
import { loadOptionalPeer } from '@mxguard/core';
import type { Redis, RedisOptions } from 'ioredis';

/** Options of {@link failFastRedis}. */
export interface FailFastRedisOptions {
  /** `redis://[:password@]host:port/db` (or `rediss://`). @default 'redis://127.0.0.1:6379' */
  readonly url?: string;
  /** A command that got no answer in this time fails (ms). @default 1000 */
  readonly commandTimeout?: number;
  /** Longest wait between reconnection attempts (ms); attempts never stop. @default 5000 */
  readonly reconnectMaxDelay?: number;
  /**
   * Commands sent before the first connection wait for it (each up to `commandTimeout`) instead of
   * failing at once; after it, a command sent while Redis is down fails at once. For stores made
   * at start-up that are used before anyone waits for them. @default false
   */
  readonly queueUntilFirstConnection?: boolean;
  /** Extra ioredis options; they override the ones above. */
  readonly redis?: RedisOptions;
}

/**
 * An ioredis connection that fails fast: no retrying of a command (`maxRetriesPerRequest: 0`), a
 * command timeout, no offline queue once connected, and reconnection in the background with a
 * capped exponential back-off. It has a no-op `error` listener, so a failed reconnection is not an
 * unhandled event; the failures surface as rejected commands, which the stores turn into their
 * failure outcome.
 */
export function failFastRedis(options: FailFastRedisOptions = {}): Redis {
  const maxDelay = options.reconnectMaxDelay ?? 5000;
  const queue = options.queueUntilFirstConnection ?? false;
  const { Redis: RedisClient } = loadOptionalPeer<typeof import('ioredis')>(
    'ioredis',
    'A Redis store of mxguard (@mxguard/redis)',
    import.meta.url,
  );
  const redis = new RedisClient(options.url ?? 'redis://127.0.0.1:6379', {
    maxRetriesPerRequest: 0,
    enableOfflineQueue: queue,
    commandTimeout: options.commandTimeout ?? 1000,
    retryStrategy: (times: number) => Math.min(50 * 2 ** Math.min(times, 10), maxDelay),
    lazyConnect: false,
    ...options.redis,
  });
  if (queue) {
    redis.once('ready', () => {
      redis.options.enableOfflineQueue = false;
    });
  }
  redis.on('error', () => {});
  return redis;
}

/** A Lua script with its SHA1, for EVALSHA. */
export interface LuaScript {
  /** The script's Lua text, sent with EVAL when Redis does not know the SHA1 yet (NOSCRIPT). */
  readonly source: string;
  /** The hex SHA1 of `source`, as EVALSHA takes it. */
  readonly sha: string;
}

/** Prepares a Lua script (its SHA1 computed once). */
export function luaScript(source: string): LuaScript {
  return { source, sha: createHash('sha1').update(source).digest('hex') };
}

/**
 * Runs a script by its hash (EVALSHA), loading it with EVAL when Redis does not know it (NOSCRIPT:
 * Redis restarted, or SCRIPT FLUSH ran).
 */
export async function runLua(
  redis: Redis,
  script: LuaScript,
  keys: readonly string[],
  args: readonly (string | number)[],
): Promise<unknown> {
  try {
    return await redis.evalsha(script.sha, keys.length, ...keys, ...args);
  } catch (err) {
    if (err instanceof Error && err.message.startsWith('NOSCRIPT'))
      return redis.eval(script.source, keys.length, ...keys, ...args);
    throw err;
  }
}

/**
 * Closes a connection the store made: QUIT when connected, else (Redis down, or QUIT failing)
 * drop the socket and stop reconnecting, so closing never waits on a Redis that is not there.
 */
export async function closeRedis(redis: Redis): Promise<void> {
  if (redis.status !== 'ready') {
    redis.disconnect();
    return;
  }
  try {
    await redis.quit();
  } catch {
    redis.disconnect();
  }
}
