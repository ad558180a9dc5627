import type { Logger } from '@mxguard/core';
import { silentLogger } from '@mxguard/core';
import { closeRedis, failFastRedis, luaScript, runLua } from '@mxguard/redis';
import type { Redis, RedisOptions } from 'ioredis';
import type { ClientRecord, GreylistDecision, TripletRecord } from '../machine.js';
import type { DecideRequest, GreylistStore } from './types.js';

/**
 * The state machine of machine.ts, step for step, in Lua: Redis runs a script atomically (no other
 * command runs in between), so two MX hosts deciding the same triplet at the same instant are
 * serialised: one creates the record, the other finds it; no pass count is lost. Time comes in as
 * ARGV[1] (the caller's clock, never Redis `TIME`), so decisions are the same as the memory
 * store's and tests are deterministic. GreylistRecords are hashes (`f` first, `l` last, `n` count; client
 * `c` count, `l` last) that expire by themselves `maxAge` after they were last seen (PEXPIRE,
 * relative, so a test clock far from Redis's own does not expire them at once).
 *
 * KEYS[1] triplet, KEYS[2] client. ARGV: now, delay, retryWindow, maxAge, awlClients, awlInterval.
 * Returns {outcome, retryIn, firstPass, delayedMs, clientWhitelisted}.
 */
export const DECIDE_LUA = `
local now = tonumber(ARGV[1])
local delay = tonumber(ARGV[2])
local retryWindow = tonumber(ARGV[3])
local maxAge = tonumber(ARGV[4])
local awlClients = tonumber(ARGV[5])
local awlInterval = tonumber(ARGV[6])
local function fmt(x) return string.format('%.0f', x) end
local function ttl(last) local t = last + maxAge - now; if t < 1 then t = 1 end; return fmt(t) end

local cc, cl
local c = redis.call('HMGET', KEYS[2], 'c', 'l')
if c[1] and c[2] then
  cc = tonumber(c[1]); cl = tonumber(c[2])
  if now - cl > maxAge then cc = nil; cl = nil end
end
if awlClients > 0 and cc and cc >= awlClients then
  local t = math.max(now, cl)
  if t >= cl + awlInterval then
    redis.call('HSET', KEYS[2], 'c', fmt(cc + 1), 'l', fmt(t))
    redis.call('PEXPIRE', KEYS[2], ttl(t))
  end
  return {'whitelisted-client', 0, 0, 0, 0}
end

local tf, tl, tn
local r = redis.call('HMGET', KEYS[1], 'f', 'l', 'n')
if r[1] and r[2] then
  tf = tonumber(r[1]); tl = tonumber(r[2]); tn = tonumber(r[3]) or 0
  if now - tl > maxAge then tf = nil; tl = nil; tn = nil end
end
local t = now
if tl and tl > t then t = tl end
local first = tf or t
local outcome = 'new'
if tf then outcome = 'early' end
local passedBefore = false
if tf and tl - tf >= delay then passedBefore = true end
if tf and not passedBefore and t - first > retryWindow then
  first = t
  outcome = 'expired-restart'
end
redis.call('HSET', KEYS[1], 'f', fmt(first), 'l', fmt(t), 'n', fmt((tn or 0) + 1))
redis.call('PEXPIRE', KEYS[1], ttl(t))
local left = delay - (t - first)
if left > 0 then return {outcome, math.ceil(left / 1000), 0, 0, 0} end
if passedBefore then return {'passed', 0, 0, 0, 0} end
local cw = 0
if awlClients > 0 then
  local ct = t
  if cl and cl > ct then ct = cl end
  if not cc or ct >= cl + awlInterval then
    cc = (cc or 0) + 1
    redis.call('HSET', KEYS[2], 'c', fmt(cc), 'l', fmt(ct))
    redis.call('PEXPIRE', KEYS[2], ttl(ct))
    if cc == awlClients then cw = 1 end
  end
end
return {'passed', 0, 1, t - first, cw}
`;

const DECIDE = luaScript(DECIDE_LUA);

/** Options of the Redis store. */
export interface RedisStoreOptions {
  /** `redis://[:password@]host:port/db` (or `rediss://`). Ignored when `client` is given. @default 'redis://127.0.0.1:6379/0' */
  readonly url?: string;
  /** A connection made by the caller (its options are then the caller's); `close()` leaves it open. */
  readonly client?: Redis;
  /** Prepended to every key, so several applications share one Redis. @default 'mxg:gl:' */
  readonly prefix?: string;
  /**
   * A command that got no answer in this time fails (ms): a hung Redis must not hang the SMTP
   * session. @default 1000
   */
  readonly commandTimeout?: number;
  /** Longest wait between reconnection attempts (ms); attempts never stop. @default 2000 */
  readonly reconnectMaxDelay?: number;
  /** Connection problems are logged here (once a failure, and on recovery). @default silent */
  readonly log?: Logger;
  /** Extra ioredis options (override the defaults above). */
  readonly redis?: RedisOptions;
}

/** The Redis store's extras. */
export interface RedisStore extends GreylistStore {
  readonly kind: 'redis';
  /** The ioredis connection. */
  readonly client: Redis;
  /** Resolves once connected (a store made before Redis is up fails decisions until then). */
  ready(): Promise<void>;
  /** Connection failures seen (ioredis `error` events). */
  readonly errors: number;
}

/**
 * A store in Redis, for several MX hosts sharing one greylist (ioredis). Fails fast when Redis is
 * away (no offline queue, a command timeout, no resending of commands that may have run: a
 * decision is not idempotent), and reconnects by itself with a capped back-off.
 */
export function redisStore(options: RedisStoreOptions = {}): RedisStore {
  const prefix = options.prefix ?? 'mxg:gl:';
  const log = options.log ?? silentLogger;
  const maxDelay = options.reconnectMaxDelay ?? 2000;
  const own = options.client === undefined;
  const client =
    options.client ??
    // spread: once
    failFastRedis({
      ...(options.url !== undefined ? { url: options.url } : {}),
      ...(options.commandTimeout !== undefined ? { commandTimeout: options.commandTimeout } : {}),
      reconnectMaxDelay: maxDelay,
      // A decision is not idempotent: never resend a command that may have run.
      redis: { autoResendUnfulfilledCommands: false, connectTimeout: 2000, ...options.redis },
    });
  let errors = 0;
  let down = false;
  // Without an `error` listener ioredis reports every failed reconnection as an unhandled error event.
  const onError = (err: Error) => {
    errors++;
    if (!down)
      log.warn({ store: 'redis', err: err.message }, 'greylist: Redis connection failed; reconnecting');
    down = true;
  };
  // A clean server shutdown closes the socket without an error: count that as down too.
  let closing = false;
  const onClose = () => {
    if (!down && !closing) log.warn({ store: 'redis' }, 'greylist: Redis connection lost; reconnecting');
    if (!closing) down = true;
  };
  const onReady = () => {
    if (down) log.info({ store: 'redis' }, 'greylist: Redis connection restored');
    down = false;
  };
  client.on('error', onError);
  client.on('ready', onReady);
  client.on('close', onClose);

  const keys = (req: { triplet: string; client: string }): [string, string] => {
    // The client address as a hash tag puts both keys in one Redis Cluster slot, as a script needs.
    const tag = `{${req.client}}`;
    return [`${prefix}t:${tag}:${req.triplet}`, `${prefix}c:${tag}`];
  };

  return {
    kind: 'redis',
    client,
    get errors() {
      return errors;
    },
    ready() {
      if (client.status === 'ready') return Promise.resolve();
      return new Promise<void>((resolve, reject) => {
        const ok = () => {
          client.off('end', end);
          resolve();
        };
        const end = () => {
          client.off('ready', ok);
          reject(new Error('Redis connection ended'));
        };
        client.once('ready', ok);
        client.once('end', end);
      });
    },
    async decide(req: DecideRequest, now: number): Promise<GreylistDecision> {
      const p = req.policy;
      const res = await runLua(client, DECIDE, keys(req), [
        now,
        p.delay,
        p.retryWindow,
        p.maxAge,
        p.awlClients,
        p.awlInterval,
      ]);
      if (!Array.isArray(res) || res.length !== 5)
        throw new Error(`greylist script returned ${JSON.stringify(res)}`);
      const [outcome, retryIn, firstPass, delayedMs, cw] = res as [
        GreylistDecision['outcome'],
        number,
        number,
        number,
        number,
      ];
      return {
        outcome,
        retryIn: Number(retryIn),
        firstPass: Number(firstPass) === 1,
        delayedMs: Number(delayedMs),
        clientWhitelisted: Number(cw) === 1,
      };
    },
    async inspect(triplet, clientKey) {
      const [tk, ck] = keys({ triplet, client: clientKey });
      const [t, c] = await Promise.all([client.hgetall(tk), client.hgetall(ck)]);
      const out: { triplet?: TripletRecord; client?: ClientRecord } = {};
      if (t.f !== undefined && t.l !== undefined) {
        out.triplet = { first: Number(t.f), last: Number(t.l), count: Number(t.n ?? 0) };
      }
      if (c.c !== undefined && c.l !== undefined) out.client = { count: Number(c.c), last: Number(c.l) };
      return out;
    },
    async close() {
      closing = true;
      client.off('ready', onReady);
      client.off('close', onClose);
      if (!own) {
        client.off('error', onError);
        return;
      }
      // Keep the error listener: a late socket error after quit must not become an unhandled event.
      await closeRedis(client);
    },
  };
}
