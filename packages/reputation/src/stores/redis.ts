import { createHash } from 'node:crypto';
import { Redis } from 'ioredis';
import type { ReputationStore, ScoreBounds } from '../types.js';
import { decayed } from '../types.js';

/** Options of the Redis reputation store. */
export interface RedisReputationStoreOptions {
  /** A `redis://` or `rediss://` URL. Ignored when `client` is given. @default 'redis://127.0.0.1:6379' */
  readonly url?: string;
  /** An ioredis client to use; the store then does not close it. */
  readonly client?: Redis;
  /**
   * Prefix of every key, so several sites or test runs can share one Redis.
   * @default 'mxguard:rep:'
   */
  readonly prefix?: string;
}

// Scores live in a hash {s: score, u: updated ms, e: expires ms}. `now` is passed in (never Redis's
// TIME) so every MX host and the tests share one notion of time; PEXPIRE only collects garbage.
const ADD_SCORE = `
local now = tonumber(ARGV[1])
local delta = tonumber(ARGV[2])
local hl = tonumber(ARGV[3])
local lo = tonumber(ARGV[4])
local hi = tonumber(ARGV[5])
local ttl = tonumber(ARGV[6])
local v = redis.call('HMGET', KEYS[1], 's', 'u', 'e')
local s = 0
if v[1] and v[2] and v[3] and tonumber(v[3]) > now then
  local dt = now - tonumber(v[2])
  if dt < 0 then dt = 0 end
  s = tonumber(v[1])
  if hl > 0 then s = s * math.pow(2, -dt / hl) end
end
s = s + delta
if s < lo then s = lo end
if s > hi then s = hi end
local out = string.format('%.17g', s)
redis.call('HSET', KEYS[1], 's', out, 'u', ARGV[1], 'e', tostring(now + ttl))
redis.call('PEXPIRE', KEYS[1], math.max(1, math.floor(ttl)))
return out
`;

// A sliding window kept as a comma-separated list of event times (at most `cap`, which is small).
const HIT = `
local now = tonumber(ARGV[1])
local win = tonumber(ARGV[2])
local cap = tonumber(ARGV[3])
local cur = redis.call('GET', KEYS[1])
local kept = {}
if cur then
  for t in string.gmatch(cur, '[^,]+') do
    if tonumber(t) > now - win then kept[#kept + 1] = t end
  end
end
kept[#kept + 1] = ARGV[1]
while #kept > cap do table.remove(kept, 1) end
redis.call('SET', KEYS[1], table.concat(kept, ','), 'PX', math.max(1, math.floor(win)))
return #kept
`;

const LOCK = `
local now = tonumber(ARGV[1])
local untilMs = tonumber(ARGV[2])
local cur = tonumber(redis.call('GET', KEYS[1]) or '0')
if cur > now and cur > untilMs then untilMs = cur end
if untilMs > now then
  redis.call('SET', KEYS[1], string.format('%d', untilMs), 'PX', math.max(1, math.floor(untilMs - now)))
end
return 1
`;

/**
 * Reputation in Redis, shared by several MX hosts and surviving restarts. Each update is one Lua
 * script, so concurrent sessions never lose an increment; keys carry a TTL so idle networks vanish.
 */
export class RedisReputationStore implements ReputationStore {
  private readonly redis: Redis;
  private readonly owned: boolean;
  private readonly prefix: string;

  constructor(options: RedisReputationStoreOptions = {}) {
    this.prefix = options.prefix ?? 'mxguard:rep:';
    if (options.client) {
      this.redis = options.client;
      this.owned = false;
    } else {
      // Fail fast rather than queue forever: a store that is down must become a verdict quickly.
      // Commands wait for the first connection (up to a second each), then fail at once while
      // Redis is down, so a dead store becomes its failure outcome without slowing every session;
      // ioredis reconnects in the background with a capped backoff.
      this.redis = new Redis(options.url ?? 'redis://127.0.0.1:6379', {
        maxRetriesPerRequest: 0,
        enableOfflineQueue: true,
        commandTimeout: 1000,
        retryStrategy: (times: number) => Math.min(50 * 2 ** Math.min(times, 10), 5000),
        lazyConnect: false,
      });
      const redis = this.redis;
      redis.once('ready', () => {
        redis.options.enableOfflineQueue = false;
      });
      this.owned = true;
      // Errors surface on each call as rejected promises; without a listener ioredis prints them.
      this.redis.on('error', () => {});
    }
  }

  private async script(src: string, keys: string[], args: (string | number)[]): Promise<unknown> {
    const sha = sha1(src);
    try {
      return await this.redis.evalsha(sha, keys.length, ...keys, ...args);
    } catch (err) {
      if (err instanceof Error && err.message.includes('NOSCRIPT')) {
        return this.redis.eval(src, keys.length, ...keys, ...args);
      }
      throw err;
    }
  }

  async score(key: string, now: number, halfLifeMs: number): Promise<number> {
    const [s, u, e] = await this.redis.hmget(`${this.prefix}s:${key}`, 's', 'u', 'e');
    if (s == null || u == null || e == null || Number(e) <= now) return 0;
    return decayed(Number(s), Number(u), now, halfLifeMs);
  }

  async addScore(
    key: string,
    delta: number,
    now: number,
    halfLifeMs: number,
    bounds: ScoreBounds,
  ): Promise<number> {
    const out = await this.script(
      ADD_SCORE,
      [`${this.prefix}s:${key}`],
      [now, delta, halfLifeMs, bounds.min, bounds.max, bounds.ttlMs],
    );
    return Number(out);
  }

  async hit(key: string, now: number, windowMs: number, cap: number): Promise<number> {
    return Number(await this.script(HIT, [`${this.prefix}w:${key}`], [now, windowMs, cap]));
  }

  async lock(key: string, until: number, now: number): Promise<void> {
    await this.script(LOCK, [`${this.prefix}l:${key}`], [now, until]);
  }

  async lockedUntil(key: string, now: number): Promise<number> {
    const v = await this.redis.get(`${this.prefix}l:${key}`);
    const until = v == null ? 0 : Number(v);
    return until > now ? until : 0;
  }

  async close(): Promise<void> {
    if (!this.owned) return;
    // QUIT needs a live connection; when Redis is down, drop the socket and stop reconnecting.
    if (this.redis.status !== 'ready') {
      this.redis.disconnect();
      return;
    }
    try {
      await this.redis.quit();
    } catch {
      this.redis.disconnect();
    }
  }
}

const shas = new Map<string, string>();
function sha1(src: string): string {
  let s = shas.get(src);
  if (!s) {
    s = createHash('sha1').update(src).digest('hex');
    shas.set(src, s);
  }
  return s;
}
