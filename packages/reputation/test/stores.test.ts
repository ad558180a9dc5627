import { MemoryReputationStore, RedisReputationStore, reputationStoreFromConfig } from '@mxguard/reputation';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type RedisServer, startRedis } from '../../greylist/test/redis-server.js';
import { reputationStoreSuite } from './helpers/conformance.js';

reputationStoreSuite('memory', () => new MemoryReputationStore({ max: 1000 }));

let redis: RedisServer;
let n = 0;
beforeAll(async () => {
  redis = await startRedis({ appendfsync: 'no' });
});
afterAll(async () => {
  await redis?.dispose();
});

reputationStoreSuite('redis', () => new RedisReputationStore({ url: redis.url, prefix: `t${n++}:` }));

describe('memory store bounds', () => {
  it('evicts the least recently used network beyond max', async () => {
    const s = new MemoryReputationStore({ max: 2 });
    const b = { min: -10, max: 100, ttlMs: 1e9 };
    await s.addScore('a', 1, 0, 1e6, b);
    await s.addScore('b', 1, 0, 1e6, b);
    await s.addScore('c', 1, 0, 1e6, b);
    expect(await s.score('a', 0, 1e6)).toBe(0);
    expect(await s.score('c', 0, 1e6)).toBe(1);
  });
  it('rejects a bad max', () => {
    expect(() => new MemoryReputationStore({ max: 0 })).toThrow(TypeError);
  });
});

describe('reputationStoreFromConfig', () => {
  it('builds memory and redis stores and refuses anything else', async () => {
    expect(reputationStoreFromConfig('memory')).toBeInstanceOf(MemoryReputationStore);
    expect(reputationStoreFromConfig({ type: 'memory', max: 5 })).toBeInstanceOf(MemoryReputationStore);
    const r = reputationStoreFromConfig({ url: redis.url, prefix: 'cfg:' });
    expect(r).toBeInstanceOf(RedisReputationStore);
    await r.addScore('x', 3, 0, 1000, { min: 0, max: 10, ttlMs: 1e6 });
    expect(await r.score('x', 0, 1000)).toBe(3);
    await r.close();
    expect(() => reputationStoreFromConfig('mysql://x')).toThrow(TypeError);
  });

  it('a redis store that is down fails with an error, not a hang', async () => {
    const r = new RedisReputationStore({ url: 'redis://127.0.0.1:1' });
    await expect(r.score('x', 0, 1000)).rejects.toThrow();
    await r.close().catch(() => {});
  });
});
