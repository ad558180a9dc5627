import { closeRedis, failFastRedis, luaScript, runLua } from '@mxguard/redis';
import type { Redis } from 'ioredis';
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
const ADD_SCORE = luaScript(`
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
`);

// A sliding window kept as a comma-separated list of event times (at most `cap`, which is small).
const HIT = luaScript(`
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
`);

const LOCK = luaScript(`
local now = tonumber(ARGV[1])
local untilMs = tonumber(ARGV[2])
local cur = tonumber(redis.call('GET', KEYS[1]) or '0')
if cur > now and cur > untilMs then untilMs = cur end
if untilMs > now then
  redis.call('SET', KEYS[1], string.format('%d', untilMs), 'PX', math.max(1, math.floor(untilMs - now)))
end
return 1
`);

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
      // Commands wait for the first connection, then fail at once while Redis is down.
      // spread: once
      this.redis = failFastRedis({
        ...(options.url !== undefined ? { url: options.url } : {}),
        queueUntilFirstConnection: true,
      });
      this.owned = true;
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
    const out = await runLua(
      this.redis,
      ADD_SCORE,
      [`${this.prefix}s:${key}`],
      [now, delta, halfLifeMs, bounds.min, bounds.max, bounds.ttlMs],
    );
    return Number(out);
  }

  async hit(key: string, now: number, windowMs: number, cap: number): Promise<number> {
    return Number(await runLua(this.redis, HIT, [`${this.prefix}w:${key}`], [now, windowMs, cap]));
  }

  async lock(key: string, until: number, now: number): Promise<void> {
    await runLua(this.redis, LOCK, [`${this.prefix}l:${key}`], [now, until]);
  }

  async lockedUntil(key: string, now: number): Promise<number> {
    const v = await this.redis.get(`${this.prefix}l:${key}`);
    const until = v == null ? 0 : Number(v);
    return until > now ? until : 0;
  }

  async close(): Promise<void> {
    if (this.owned) await closeRedis(this.redis);
  }
}
