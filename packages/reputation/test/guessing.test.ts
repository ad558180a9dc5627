import { chain, ManualClock, type Session, silentLogger, site } from '@mxguard/core';
import {
  addressGuessing,
  createReputation,
  MemoryReputationStore,
  RedisReputationStore,
  type ReputationStore,
  reputationFactories,
  tableValidator,
} from '@mxguard/reputation';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type RedisServer, startRedis } from '../../greylist/test/redis-server.js';

const MIN = 60_000;
const ctx = (clock: ManualClock) => ({ clock, log: silentLogger, findings: [] });
const rcpt = (clientAddress: string, to: string): Session => ({
  clientAddress,
  stage: 'rcpt',
  helo: 'mx.example.net',
  mailFrom: 'x@example.net',
  rcptTo: to,
});
const validator = tableValidator(['alice', 'bob@example.com'], ['example.com', 'example.org']);

describe('tableValidator', () => {
  it('matches full addresses and local parts in our domains, case-insensitively', () => {
    expect(validator('Alice@Example.ORG', rcpt('192.0.2.1', ''))).toBe(true);
    expect(validator('bob@example.com', rcpt('192.0.2.1', ''))).toBe(true);
    expect(validator('bob@example.org', rcpt('192.0.2.1', ''))).toBe(false);
    expect(validator('carol@example.com', rcpt('192.0.2.1', ''))).toBe(false);
    expect(validator('carol@elsewhere.net', rcpt('192.0.2.1', ''))).toBe('skip');
    expect(validator('no-at-sign', rcpt('192.0.2.1', ''))).toBe('skip');
  });
});

function suite(name: string, makeStore: () => ReputationStore) {
  describe(`address-guessing (${name} store)`, () => {
    function setup(extra: Partial<Parameters<typeof addressGuessing>[0]> = {}) {
      const clock = new ManualClock(1_700_000_000_000);
      const store = makeStore();
      const check = addressGuessing({ store, clock, validator, ...extra });
      return { clock, store, check };
    }

    it('a known recipient passes; an unknown one gets 550 5.1.1 as Postfix words it', async () => {
      const { check, clock } = setup();
      expect((await check.run(rcpt('192.0.2.1', 'alice@example.com'), ctx(clock))).action).toBe('next');
      const v = await check.run(rcpt('192.0.2.1', 'mallory@example.com'), ctx(clock));
      expect(v.action).toBe('reject');
      if (v.action !== 'next') {
        expect(v.reply).toEqual({
          code: 550,
          enhanced: '5.1.1',
          text: '<mallory@example.com>: Recipient address rejected: User unknown',
        });
        expect(v.reason).toContain('1/10');
      }
    });

    it('locks the network out after the threshold: 450 4.7.1 for every command, known users too', async () => {
      const { check, clock } = setup();
      for (let i = 0; i < 10; i++) {
        const v = await check.run(rcpt(`192.0.2.${i + 1}`, `guess${i}@example.com`), ctx(clock));
        expect(v.action).toBe('reject');
      }
      for (const s of [
        rcpt('192.0.2.77', 'alice@example.com'),
        { clientAddress: '192.0.2.77', stage: 'connect' } as Session,
        { clientAddress: '192.0.2.77', stage: 'mail', mailFrom: 'a@b.example' } as Session,
      ]) {
        const v = await check.run(s, ctx(clock));
        expect(v.action).toBe('defer');
        if (v.action !== 'next') expect(v.reply).toMatchObject({ code: 450, enhanced: '4.7.1' });
      }
      // Another network is not affected.
      expect((await check.run(rcpt('198.51.100.1', 'alice@example.com'), ctx(clock))).action).toBe('next');
      // The lockout ends after an hour.
      clock.advance(60 * MIN - 1);
      expect((await check.run(rcpt('192.0.2.77', 'alice@example.com'), ctx(clock))).action).toBe('defer');
      clock.advance(1);
      expect((await check.run(rcpt('192.0.2.77', 'alice@example.com'), ctx(clock))).action).toBe('next');
    });

    it('a sender who mistypes now and then never reaches the threshold', async () => {
      const { check, clock } = setup();
      // Nine typos in ten minutes, then one every 2 minutes for an hour: never ten in any window.
      for (let i = 0; i < 9; i++) await check.run(rcpt('192.0.2.1', `typo${i}@example.com`), ctx(clock));
      clock.advance(10 * MIN);
      for (let i = 0; i < 30; i++) {
        const v = await check.run(rcpt('192.0.2.1', `typo${i}@example.com`), ctx(clock));
        expect(v.action).toBe('reject');
        expect((await check.run(rcpt('192.0.2.1', 'alice@example.com'), ctx(clock))).action).toBe('next');
        clock.advance(2 * MIN);
      }
    });

    it('a validator failure is 451 4.3.0 and counts nothing; a foreign domain is not judged', async () => {
      const { check, clock } = setup({
        validator: (r) => (r.startsWith('fail') ? 'temporary' : r.endsWith('@example.com') ? false : 'skip'),
        threshold: 2,
      });
      for (let i = 0; i < 5; i++) {
        const v = await check.run(rcpt('192.0.2.1', `fail${i}@example.com`), ctx(clock));
        expect(v.action).toBe('defer');
        if (v.action !== 'next') expect(v.reply).toMatchObject({ code: 451, enhanced: '4.3.0' });
      }
      expect((await check.run(rcpt('192.0.2.1', 'x@elsewhere.net'), ctx(clock))).action).toBe('next');
      expect((await check.run(rcpt('192.0.2.1', 'x@example.com'), ctx(clock))).action).toBe('reject');
      expect((await check.run(rcpt('192.0.2.1', 'alice@elsewhere.net'), ctx(clock))).action).toBe('next');
    });

    it('a throwing validator is a 451, never a crash', async () => {
      const { check, clock } = setup({
        validator: () => {
          throw new Error('ldap down');
        },
      });
      const v = await check.run(rcpt('192.0.2.1', 'x@example.com'), ctx(clock));
      expect(v.action).toBe('defer');
    });

    it('feeds the reputation through recordOutcome as rejections', async () => {
      const { check, clock, store } = setup();
      const rep = createReputation({ store, clock });
      const c = chain([rep.check, check], { clock });
      for (let i = 0; i < 6; i++) {
        const s = rcpt('192.0.2.1', `guess${i}@example.com`);
        await rep.recordOutcome(s, await c.evaluate(s));
      }
      expect(await rep.score('192.0.2.1')).toBeCloseTo(6, 6);
      const d = await c.evaluate(rcpt('192.0.2.1', 'alice@example.com'));
      expect(d.action).toBe('next');
      expect(d.findings.some((f) => f.check === 'reputation' && f.doubt)).toBe(true);
    });
  });
}

suite('memory', () => new MemoryReputationStore());

let redis: RedisServer;
let n = 0;
const opened: ReputationStore[] = [];
beforeAll(async () => {
  redis = await startRedis({ appendfsync: 'no' });
});
afterAll(async () => {
  for (const s of opened) await s.close();
  await redis?.dispose();
});
suite('redis', () => {
  const s = new RedisReputationStore({ url: redis.url, prefix: `g${n++}:` });
  opened.push(s);
  return s;
});

describe('address-guessing factory', () => {
  it('builds from plain options with a users table and the site domains', async () => {
    const clock = new ManualClock(0);
    const env = { clock, store: new MemoryReputationStore() };
    const check = reputationFactories['address-guessing']?.(
      { users: ['postmaster', 'alice'], threshold: 2 },
      site({ ourDomains: ['example.net'] }),
      env,
    );
    if (!check) throw new Error('no factory');
    expect(check.name).toBe('address-guessing');
    expect((await check.run(rcpt('192.0.2.1', 'alice@example.net'), ctx(clock))).action).toBe('next');
    expect((await check.run(rcpt('192.0.2.1', 'eve@example.net'), ctx(clock))).action).toBe('reject');
    expect((await check.run(rcpt('192.0.2.1', 'eve2@example.net'), ctx(clock))).action).toBe('reject');
    expect((await check.run(rcpt('192.0.2.1', 'alice@example.net'), ctx(clock))).action).toBe('defer');
  });
  it('refuses to build without a validator or users', () => {
    const env = { clock: new ManualClock(0), store: new MemoryReputationStore() };
    expect(() => reputationFactories['address-guessing']?.({}, site(), env)).toThrow(TypeError);
    expect(() => reputationFactories['address-guessing']?.({ users: [], thresh: 1 }, site(), env)).toThrow(
      /unknown option/,
    );
  });
});
