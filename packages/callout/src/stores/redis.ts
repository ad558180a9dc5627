import { closeRedis, failFastRedis } from '@mxguard/redis';
import type { Redis } from 'ioredis';
import type { CalloutRecord, CalloutStatus, CalloutStore } from '../types.js';

/** Options of the Redis callout cache. */
export interface RedisCalloutStoreOptions {
  /** A `redis://` or `rediss://` URL. Ignored when `client` is given. @default 'redis://127.0.0.1:6379' */
  readonly url?: string;
  /** An ioredis client to use; the store then does not close it. */
  readonly client?: Redis;
  /** Prefix of every key. @default 'mxguard:callout:' */
  readonly prefix?: string;
}

const STATUSES: readonly CalloutStatus[] = ['exists', 'unknown-user', 'temporary', 'inconclusive', 'todo'];

/**
 * The callout cache in Redis, shared by several MX hosts so one probe serves them all (and the
 * pending marker keeps them from probing the same address together). One JSON value a key, with a
 * TTL to its `expires`; the `now` passed in decides expiry, the TTL only collects garbage.
 */
export class RedisCalloutStore implements CalloutStore {
  private readonly redis: Redis;
  private readonly owned: boolean;
  private readonly prefix: string;

  constructor(options: RedisCalloutStoreOptions = {}) {
    this.prefix = options.prefix ?? 'mxguard:callout:';
    if (options.client) {
      this.redis = options.client;
      this.owned = false;
    } else {
      // Commands wait for the first connection, then fail at once while Redis is down.
      // spread: once
      this.redis = failFastRedis({
        ...(options.url !== undefined ? { url: options.url } : {}),
        queueUntilFirstConnection: true,
      });
      this.owned = true;
    }
  }

  async get(key: string, now: number): Promise<CalloutRecord | undefined> {
    const raw = await this.redis.get(this.prefix + key);
    if (raw == null) return undefined;
    const r = parse(raw);
    return r && r.expires > now ? r : undefined;
  }

  async set(key: string, record: CalloutRecord, now: number): Promise<void> {
    const ttl = Math.floor(record.expires - now);
    if (ttl <= 0) {
      await this.redis.del(this.prefix + key);
      return;
    }
    await this.redis.set(this.prefix + key, JSON.stringify(record), 'PX', ttl);
  }

  async close(): Promise<void> {
    if (this.owned) await closeRedis(this.redis);
  }
}

/** A stored record, or `undefined` when malformed (as verify.c treats a bad entry: unknown). */
function parse(raw: string): CalloutRecord | undefined {
  try {
    const o = JSON.parse(raw) as Record<string, unknown>;
    if (
      typeof o.status === 'string' &&
      (STATUSES as readonly string[]).includes(o.status) &&
      typeof o.probed === 'number' &&
      typeof o.updated === 'number' &&
      typeof o.text === 'string' &&
      typeof o.expires === 'number'
    ) {
      return {
        status: o.status as CalloutStatus,
        probed: o.probed,
        updated: o.updated,
        text: o.text,
        expires: o.expires,
      };
    }
  } catch {
    // fall through
  }
  return undefined;
}
