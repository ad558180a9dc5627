import { randomUUID } from 'node:crypto';
import type { Logger, Session } from '@mxguard/core';
import { ManualClock } from '@mxguard/core';
import type { RedisStore } from '@mxguard/greylist';
import { DEFAULT_POLICY, greylistCheck, redisStore, storeFromConfig } from '@mxguard/greylist';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { type RedisServer, startRedis } from './redis-server.js';
import { testStore } from './store-suite.js';

let server: RedisServer;
beforeAll(async () => {
  server = await startRedis();
});
afterAll(async () => {
  await server?.dispose();
});

testStore('redis', async () => {
  const s = redisStore({ url: server.url, prefix: `suite:${randomUUID()}:` });
  await s.ready();
  return s;
});

const T0 = 1_700_000_000_000;
const req = () => ({
  triplet: `192.0.2.0/24/${randomUUID()}@example.org/r@example.com`,
  client: '192.0.2.10',
  policy: DEFAULT_POLICY,
});

function recordingLog() {
  const lines: { level: string; obj: object; msg?: string }[] = [];
  const at =
    (level: string) =>
    (obj: object, msg?: string): void => {
      lines.push({ level, obj, ...(msg !== undefined ? { msg } : {}) });
    };
  const log: Logger = { debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error') };
  return { log, lines };
}

describe('redis store against a real redis-server', () => {
  it('two MX hosts (two connections) deciding one triplet at the same instant: one creates it', async () => {
    const prefix = `mx:${randomUUID()}:`;
    const a = redisStore({ url: server.url, prefix });
    const b = redisStore({ url: server.url, prefix });
    await Promise.all([a.ready(), b.ready()]);
    const r = req();
    const all = await Promise.all(Array.from({ length: 40 }, (_, i) => (i % 2 === 0 ? a : b).decide(r, T0)));
    expect(all.filter((d) => d.outcome === 'new')).toHaveLength(1);
    const passes = await Promise.all(
      Array.from({ length: 40 }, (_, i) => (i % 2 === 0 ? a : b).decide(r, T0 + 300_000)),
    );
    expect(passes.filter((d) => d.firstPass)).toHaveLength(1);
    expect((await a.inspect(r.triplet, r.client)).client).toEqual({ count: 1, last: T0 + 300_000 });
    await Promise.all([a.close(), b.close()]);
  });

  it('keys carry the prefix and expire by themselves at max age', async () => {
    const prefix = `px:${randomUUID()}:`;
    const s = redisStore({ url: server.url, prefix });
    await s.ready();
    const r = req();
    await s.decide(r, T0);
    const keys = await s.client.keys(`${prefix}*`);
    expect(keys).toHaveLength(1);
    const ttl = await s.client.pttl(keys[0]!);
    expect(ttl).toBeGreaterThan(DEFAULT_POLICY.maxAge - 60_000);
    expect(ttl).toBeLessThanOrEqual(DEFAULT_POLICY.maxAge);
    await s.close();
  });

  it('reloads its script after SCRIPT FLUSH (NOSCRIPT)', async () => {
    const s = redisStore({ url: server.url, prefix: `ns:${randomUUID()}:` });
    await s.ready();
    const r = req();
    await s.decide(r, T0);
    await s.client.script('FLUSH');
    expect(await s.decide(r, T0 + 1000)).toMatchObject({ outcome: 'early' });
    await s.close();
  });

  it('storeFromConfig makes a Redis store from a URL and prefix', async () => {
    const prefix = `cfg:${randomUUID()}:`;
    const s = (await storeFromConfig({ store: server.url, prefix })) as RedisStore;
    expect(s.kind).toBe('redis');
    await s.ready();
    await s.decide(req(), T0);
    expect(await s.client.keys(`${prefix}*`)).toHaveLength(1);
    await s.close();
  });

  it('a Redis restart mid-run keeps the records (AOF on), and the store reconnects by itself', async () => {
    const { log, lines } = recordingLog();
    const s = redisStore({ url: server.url, prefix: `rs:${randomUUID()}:`, log });
    await s.ready();
    const r = req();
    expect(await s.decide(r, T0)).toMatchObject({ outcome: 'new' });
    await server.stop();
    await server.start();
    await vi.waitFor(() => expect(s.client.status).toBe('ready'), { timeout: 15_000, interval: 50 });
    // The record survived: the retry after the delay passes rather than starting over.
    expect(await s.decide(r, T0 + 300_000)).toMatchObject({ outcome: 'passed', firstPass: true });
    expect(lines.some((l) => l.level === 'info' && /restored/.test(l.msg ?? ''))).toBe(true);
    await s.close();
  });

  it('Redis killed: the configured outcome, no crash, no unhandled rejection; recovery afterwards', async () => {
    const unhandled: unknown[] = [];
    const onUnhandled = (e: unknown) => unhandled.push(e);
    process.on('unhandledRejection', onUnhandled);
    const { log, lines } = recordingLog();
    const store = redisStore({ url: server.url, prefix: `kill:${randomUUID()}:`, log, commandTimeout: 500 });
    await store.ready();
    const clock = new ManualClock(T0);
    const pass = greylistCheck({ store }, { mode: 'all' });
    const deferring = greylistCheck({ store }, { mode: 'all', onStoreError: 'defer' });
    const session: Session = {
      clientAddress: '203.0.113.5',
      mailFrom: 'alice@example.org',
      rcptTo: 'bob@example.com',
      stage: 'rcpt',
    };
    const ctx = { clock, log, findings: [] };
    expect(await pass.run(session, ctx)).toMatchObject({ action: 'defer', reply: { code: 450 } });

    await server.kill();
    const during = await pass.run(session, ctx);
    expect(during).toMatchObject({ action: 'next', findings: [{ check: 'greylist', tag: 'store-error' }] });
    expect(await deferring.run(session, ctx)).toMatchObject({
      action: 'defer',
      reply: { code: 451, enhanced: '4.3.0' },
    });
    expect(pass.stats.storeErrors).toBe(1);
    expect(deferring.stats.storeErrors).toBe(1);
    expect(lines.some((l) => l.level === 'warn' && /store failed/.test(l.msg ?? ''))).toBe(true);

    await server.start();
    await vi.waitFor(() => expect(store.client.status).toBe('ready'), { timeout: 15_000, interval: 50 });
    clock.advance(300_000);
    // The first attempt was written before the kill and fsynced (appendfsync always): it passes now.
    expect(await pass.run(session, ctx)).toMatchObject({ action: 'next', findings: [{ tag: 'passed' }] });
    await store.close();
    process.off('unhandledRejection', onUnhandled);
    expect(unhandled).toEqual([]);
  });
});
