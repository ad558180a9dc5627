import type { CheckContext, Finding, Session } from '@mxguard/core';
import { bindFactories, buildPolicy, isValidReply, ManualClock, silentLogger } from '@mxguard/core';
import type { GreylistEvent, GreylistStore } from '@mxguard/greylist';
import { greylistCheck, greylistFactories, memoryStore, storeFromConfig } from '@mxguard/greylist';
import { describe, expect, it } from 'vitest';

const T0 = 1_700_000_000_000;
const doubt: Finding = { check: 'rdns-missing', tag: 'no-ptr', doubt: true };

function session(over: Partial<Session> = {}): Session {
  return {
    clientAddress: '203.0.113.5',
    mailFrom: 'alice@example.org',
    rcptTo: 'bob@example.com',
    stage: 'rcpt',
    ...over,
  };
}

function setup(options: Parameters<typeof greylistCheck>[1] = {}) {
  const clock = new ManualClock(T0);
  const store = memoryStore();
  const events: GreylistEvent[] = [];
  const check = greylistCheck({ store }, { onDecision: (e) => events.push(e), ...options });
  const ctx = (findings: Finding[] = [doubt]): CheckContext => ({ clock, log: silentLogger, findings });
  return { clock, store, check, ctx, events };
}

describe('greylist check', () => {
  it('selective: a client nothing doubts is not greylisted', async () => {
    const { check, ctx } = setup();
    expect(await check.run(session(), ctx([{ check: 'dnsbl', tag: 'x', score: 1 }]))).toMatchObject({
      action: 'next',
    });
    expect(check.stats.undoubted).toBe(1);
  });

  it('answers at once, without a promise, when the store is not asked (nothing doubts, allowlisted)', async () => {
    const { check, ctx } = setup();
    const undoubted = check.run(session(), ctx([]));
    expect(undoubted).not.toBeInstanceOf(Promise);
    expect(undoubted).toMatchObject({ action: 'next', reason: 'greylist: nothing doubts this client' });
    const allowed = check.run(session({ rcptTo: 'postmaster@example.com' }), ctx());
    expect(allowed).not.toBeInstanceOf(Promise);
    expect(allowed).toMatchObject({ action: 'next', findings: [{ check: 'greylist', tag: 'allowlisted' }] });
    // A doubted client's triplet goes to the store: the memory store answers at once (decideNow).
    const asked = check.run(session(), ctx());
    expect(asked).not.toBeInstanceOf(Promise);
    expect(asked).toMatchObject({ action: 'defer' });
  });

  it('a store without decideNow is awaited, with the same decisions and the same failures', async () => {
    const clock = new ManualClock(T0);
    const inner = memoryStore();
    let fail = false;
    const waited: GreylistStore = {
      kind: 'waited',
      decide: async (r, now) => {
        if (fail) throw new Error('down');
        return inner.decide(r, now);
      },
      inspect: (t, c) => inner.inspect(t, c),
      close: () => inner.close(),
    };
    const now = memoryStore();
    const ctx = (): CheckContext => ({ clock, log: silentLogger, findings: [doubt] });
    const checks = [greylistCheck({ store: waited }, {}), greylistCheck({ store: now }, {})];
    for (const step of [0, 100_000, 301_000]) {
      clock.set(T0 + step);
      const [a, b] = checks.map((c) => c.run(session(), ctx()));
      expect(a).toBeInstanceOf(Promise);
      expect(b).not.toBeInstanceOf(Promise);
      expect(await a).toEqual(await b);
    }
    // A store that fails: passed with a finding, awaited or not.
    fail = true;
    expect(await checks[0]?.run(session({ rcptTo: 'x@example.com' }), ctx())).toMatchObject({
      action: 'next',
      findings: [{ tag: 'store-error' }],
    });
    const throwing = greylistCheck(
      {
        store: Object.assign(memoryStore(), {
          decideNow: () => {
            throw new Error('down');
          },
        }),
      },
      {},
    );
    expect(throwing.run(session(), ctx())).toMatchObject({
      action: 'next',
      findings: [{ tag: 'store-error' }],
    });
  });

  it('selective: a doubted client is deferred 450 4.2.0 with the seconds left, the doubt named in the reason', async () => {
    const { check, ctx, clock } = setup();
    const v = await check.run(session(), ctx());
    expect(v).toMatchObject({
      action: 'defer',
      ifPermit: true,
      reply: { code: 450, enhanced: '4.2.0', text: 'Greylisted, please retry in 300 seconds' },
    });
    expect(v.action === 'defer' && isValidReply(v.reply)).toBe(true);
    expect(v.action === 'defer' && v.reason).toMatch(
      /new triplet 203\.0\.113\.0\/24\/alice@example\.org\/bob@example\.com.*doubt: rdns-missing\/no-ptr/,
    );
    clock.advance(120_000);
    expect(await check.run(session(), ctx())).toMatchObject({
      reply: { text: 'Greylisted, please retry in 180 seconds' },
    });
    clock.advance(180_000);
    // A pass is `next` with a finding, never `accept`: later checks still run.
    expect(await check.run(session({ clientAddress: '203.0.113.77' }), ctx())).toMatchObject({
      action: 'next',
      findings: [{ check: 'greylist', tag: 'passed' }],
    });
    expect(check.stats.outcomes).toMatchObject({ new: 1, early: 1, passed: 1 });
  });

  it('a doubt asking for a longer delay (a reoffender) waits longer, never shorter', async () => {
    const { check, ctx, clock } = setup();
    const reoffender: Finding = { check: 'reputation', tag: 'reoffender:delay=900', doubt: true };
    const first = await check.run(session(), ctx([reoffender]));
    expect(first).toMatchObject({ action: 'defer' });
    expect(first.action === 'defer' && first.reply.text).toMatch(/900 seconds/);
    clock.advance(400_000);
    expect(await check.run(session(), ctx([reoffender]))).toMatchObject({ action: 'defer' });
    clock.advance(500_000);
    expect(await check.run(session(), ctx([reoffender]))).toMatchObject({ action: 'next' });
    // A hint below the policy's delay does not shorten it.
    const short: Finding = { check: 'x', tag: 'delay=10', doubt: true };
    const other = session({ rcptTo: 'carol@example.com' });
    await check.run(other, ctx([short]));
    clock.advance(60_000);
    expect(await check.run(other, ctx([short]))).toMatchObject({ action: 'defer' });
  });

  it('mode all greylists everyone (postgrey)', async () => {
    const { check, ctx } = setup({ mode: 'all' });
    expect(await check.run(session(), ctx([]))).toMatchObject({ action: 'defer' });
  });

  it('text placeholders %s and %r, and a plain defer when asked', async () => {
    const { check, ctx } = setup({ text: 'Try again in %s s, see https://help.example/%r', ifPermit: false });
    const v = await check.run(session(), ctx());
    expect(v).toMatchObject({ reply: { text: 'Try again in 300 s, see https://help.example/example.com' } });
    expect(v.action === 'defer' && v.ifPermit).toBeFalsy();
  });

  it('allowlists: postmaster@ and abuse@ by default, providers by verified name only', async () => {
    const { check, ctx, events } = setup();
    expect(await check.run(session({ rcptTo: 'postmaster@example.com' }), ctx())).toMatchObject({
      action: 'next',
      findings: [{ tag: 'allowlisted' }],
    });
    const google = { names: ['mail-wm1-f41.google.com'], verified: 'mail-wm1-f41.google.com' };
    expect(await check.run(session({ clientAddress: '192.0.2.44', rdns: google }), ctx())).toMatchObject({
      action: 'next',
      findings: [{ tag: 'allowlisted' }],
    });
    // The same PTR, not forward-confirmed: anyone can write that in their reverse zone.
    const claimed = { names: ['mail-wm1-f41.google.com'], verified: null };
    expect(await check.run(session({ clientAddress: '192.0.2.44', rdns: claimed }), ctx())).toMatchObject({
      action: 'defer',
    });
    expect(events.map((e) => e.outcome)).toEqual(['allowlisted', 'allowlisted', 'new']);
    expect(events[1]?.allowedBy).toBe('google.com');
  });

  it('user allowlist entries and providers: false', async () => {
    const { check, ctx } = setup({ allowClients: ['203.0.113.0/24'], providers: false });
    expect(await check.run(session(), ctx())).toMatchObject({ action: 'next' });
    expect(await check.run(session({ clientAddress: '209.85.220.41' }), ctx())).toMatchObject({
      action: 'defer',
    });
  });

  it('a store failure passes with a warning by default, or defers 451 4.3.0', async () => {
    const broken: GreylistStore = {
      kind: 'broken',
      decide: () => Promise.reject(new Error('connection refused')),
      inspect: () => Promise.resolve({}),
      close: () => Promise.resolve(),
    };
    const warned: object[] = [];
    const log = { ...silentLogger, warn: (o: object) => void warned.push(o) };
    const ctx: CheckContext = { clock: new ManualClock(T0), log, findings: [doubt] };
    const pass = greylistCheck({ store: broken });
    expect(await pass.run(session(), ctx)).toMatchObject({
      action: 'next',
      findings: [{ tag: 'store-error' }],
    });
    expect(pass.stats.storeErrors).toBe(1);
    expect(warned).toHaveLength(1);
    const def = greylistCheck({ store: broken }, { onStoreError: 'defer' });
    expect(await def.run(session(), ctx)).toMatchObject({
      action: 'defer',
      reply: { code: 451, enhanced: '4.3.0' },
    });
  });

  it('bad input gives a verdict, never a crash', async () => {
    const { check, ctx } = setup();
    expect(await check.run(session({ clientAddress: 'unknown' }), ctx())).toMatchObject({ action: 'next' });
    expect(await check.run(session({ rcptTo: undefined }), ctx())).toMatchObject({ action: 'next' });
    // The null sender is greylisted like any other, by client and recipient.
    expect(await check.run(session({ mailFrom: '' }), ctx())).toMatchObject({ action: 'defer' });
  });

  it('a throwing onDecision is logged, not thrown', async () => {
    const errors: object[] = [];
    const check = greylistCheck(
      { store: memoryStore() },
      {
        onDecision: () => {
          throw new Error('boom');
        },
      },
    );
    const ctx: CheckContext = {
      clock: new ManualClock(T0),
      log: { ...silentLogger, error: (o: object) => void errors.push(o) },
      findings: [doubt],
    };
    expect(await check.run(session(), ctx)).toMatchObject({ action: 'defer' });
    expect(errors).toHaveLength(1);
  });

  it('refuses bad options at construction', () => {
    const store = memoryStore();
    expect(() => greylistCheck({ store }, { mode: 'some' as 'all' })).toThrow(/mode/);
    expect(() => greylistCheck({ store }, { ipv4Prefix: 40 })).toThrow(/ipv4Prefix/);
    expect(() => greylistCheck({ store }, { providers: ['nope'] })).toThrow(/provider category/);
    expect(() => greylistCheck({ store }, { text: 'two\nlines' })).toThrow(/one line/);
    expect(() => greylistFactories.greylist!({ dealy: 5 }, {} as never, { store })).toThrow(
      /unknown option "dealy"/,
    );
    expect(() => greylistFactories.greylist!({ action: 'reject' }, {} as never, { store })).toThrow(/action/);
  });
});

describe('greylist in a config-built chain', () => {
  it('the factory binds to a store; selective mode greylists only after a doubt', async () => {
    const store = await storeFromConfig({ store: 'memory' });
    const registry = {
      ...bindFactories(greylistFactories, { store }),
      // A stand-in for rdns-missing with action greylist: a doubt finding.
      doubter: () => ({
        name: 'doubter',
        stage: 'connect' as const,
        run: (s: Session) =>
          s.rdns?.names.length === 0
            ? { action: 'next' as const, findings: [{ check: 'doubter', tag: 'no-ptr', doubt: true }] }
            : { action: 'next' as const },
      }),
    };
    const clock = new ManualClock(T0);
    const policy = buildPolicy(
      { checks: ['doubter', { name: 'greylist', mode: 'selective', delay: 60 }] },
      registry,
      { clock },
    );
    const doubted = await policy.chain.evaluate(session({ rdns: { names: [] } }));
    expect(doubted).toMatchObject({
      action: 'defer',
      check: 'greylist',
      reply: { code: 450 },
      reason: expect.stringMatching(/^greylist: new/),
    });
    const fine = await policy.chain.evaluate(
      session({ rdns: { names: ['mx.example.org'], verified: 'mx.example.org' } }),
    );
    expect(fine.action).toBe('next');
    clock.advance(60_000);
    expect((await policy.chain.evaluate(session({ rdns: { names: [] } }))).action).toBe('next');
  });

  it('storeFromConfig refuses what it does not know', async () => {
    await expect(storeFromConfig({ store: 'mongodb://x' })).rejects.toThrow(/neither/);
    await expect(storeFromConfig({ store: 'memory', maxTriplets: -1 })).rejects.toThrow(/maxTriplets/);
    await expect(storeFromConfig(42)).rejects.toThrow(TypeError);
    expect((await storeFromConfig(undefined)).kind).toBe('memory');
  });
});
