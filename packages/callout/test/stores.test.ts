import {
  type CalloutRecord,
  type CalloutStore,
  calloutStoreFromConfig,
  MemoryCalloutStore,
  RedisCalloutStore,
} from '@mxguard/callout';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { type RedisServer, startRedis } from '../../greylist/test/redis-server.js';

const rec = (over: Partial<CalloutRecord> = {}): CalloutRecord => ({
  status: 'exists',
  probed: 0,
  updated: 1000,
  text: 'host mx said: 250 2.1.5 Ok',
  expires: 5000,
  ...over,
});

function suite(name: string, make: () => CalloutStore) {
  describe(`CalloutStore conformance: ${name}`, () => {
    let store: CalloutStore;
    const opened: CalloutStore[] = [];
    beforeEach(() => {
      store = make();
      opened.push(store);
    });
    afterAll(async () => {
      for (const s of opened) await s.close();
    });

    it('returns undefined for an unknown key', async () => {
      expect(await store.get('a@example.com', 0)).toBeUndefined();
    });
    it('round-trips a record', async () => {
      await store.set('a@example.com', rec(), 1000);
      expect(await store.get('a@example.com', 1000)).toEqual(rec());
      await store.set('a@example.com', rec({ status: 'unknown-user', text: '550' }), 1000);
      expect((await store.get('a@example.com', 1000))?.status).toBe('unknown-user');
    });
    it('expires at the record expiry on the given clock', async () => {
      await store.set('b@example.com', rec(), 1000);
      expect(await store.get('b@example.com', 4999)).toBeDefined();
      expect(await store.get('b@example.com', 5000)).toBeUndefined();
    });
    it('does not store what has already expired', async () => {
      await store.set('c@example.com', rec(), 1000);
      await store.set('c@example.com', rec({ expires: 900 }), 1000);
      expect(await store.get('c@example.com', 1000)).toBeUndefined();
    });
    it('keys are exact: local parts keep their case', async () => {
      await store.set('Alice@example.com', rec(), 1000);
      expect(await store.get('alice@example.com', 1000)).toBeUndefined();
    });
  });
}

suite('memory', () => new MemoryCalloutStore({ max: 100 }));

let redis: RedisServer;
let n = 0;
beforeAll(async () => {
  redis = await startRedis({ appendfsync: 'no' });
});
afterAll(async () => {
  await redis?.dispose();
});
suite('redis', () => new RedisCalloutStore({ url: redis.url, prefix: `c${n++}:` }));

describe('callout stores', () => {
  it('the memory store is bounded', async () => {
    const s = new MemoryCalloutStore({ max: 2 });
    for (const k of ['a', 'b', 'c']) await s.set(k, rec(), 0);
    expect(await s.get('a', 0)).toBeUndefined();
    expect(await s.get('c', 0)).toBeDefined();
  });
  it('the redis store treats a malformed entry as unknown', async () => {
    const { Redis } = await import('ioredis');
    const client = new Redis(redis.url);
    await client.set('m:x@example.com', '{"status":"bogus"}');
    const s = new RedisCalloutStore({ client, prefix: 'm:' });
    expect(await s.get('x@example.com', 0)).toBeUndefined();
    await client.quit();
  });
  it('calloutStoreFromConfig builds memory and redis stores, and refuses others', async () => {
    expect(calloutStoreFromConfig()).toBeInstanceOf(MemoryCalloutStore);
    const r = calloutStoreFromConfig({ url: redis.url, prefix: 'cfg:' });
    expect(r).toBeInstanceOf(RedisCalloutStore);
    await r.set('k', rec(), 0);
    expect(await r.get('k', 0)).toEqual(rec());
    await r.close();
    expect(() => calloutStoreFromConfig('ldap://x')).toThrow(TypeError);
  });
});
