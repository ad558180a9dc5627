import { chain, type Decision, ManualClock, type Session, silentLogger, site } from '@mxguard/core';
import {
  createReputation,
  greylistDelayHint,
  MemoryReputationStore,
  networkOf,
  REPUTATION_DELAY_TAG,
  type ReputationStore,
  reputationFactories,
} from '@mxguard/reputation';
import { describe, expect, it } from 'vitest';

const HOUR = 3_600_000;
const ctx = (clock: ManualClock) => ({ clock, log: silentLogger, findings: [] });
const session = (clientAddress: string, stage: Session['stage'] = 'rcpt'): Session => ({
  clientAddress,
  stage,
  helo: 'mail.example.net',
  mailFrom: 'a@example.net',
  rcptTo: 'b@example.com',
});
const rejected = (check = 'helo-fqdn'): Decision => ({
  action: 'reject',
  check,
  reply: { code: 554, enhanced: '5.7.1', text: 'no' },
  trace: [],
  findings: [],
});
const deferred = (check: string): Decision => ({
  action: 'defer',
  check,
  reply: { code: 450, enhanced: '4.7.1', text: 'later' },
  trace: [],
  findings: [],
});
const accepted: Decision = { action: 'next', trace: [], findings: [] };

describe('networkOf', () => {
  it('groups IPv4 by /24 and IPv6 by /64', () => {
    expect(networkOf('192.0.2.77')).toBe('192.0.2.0/24');
    expect(networkOf('2001:db8:1:2:3:4:5:6')).toBe('2001:db8:1:2::/64');
    expect(networkOf('::ffff:198.51.100.9')).toBe('198.51.100.0/24');
    expect(networkOf('192.0.2.77', { ipv4Prefix: 32 })).toBe('192.0.2.77/32');
    expect(networkOf('10.1.2.3', { ipv4Prefix: 12 })).toBe('10.0.0.0/12');
    expect(networkOf('2001:db8::1', { ipv6Prefix: 48 })).toBe('2001:db8::/48');
  });
  it('gives undefined for what is not an address, and throws on a bad prefix', () => {
    expect(networkOf('mail.example.com')).toBeUndefined();
    expect(networkOf('')).toBeUndefined();
    expect(() => networkOf('192.0.2.1', { ipv4Prefix: 33 })).toThrow(TypeError);
  });
});

describe('reputation check', () => {
  function setup(extra: Partial<Parameters<typeof createReputation>[0]> = {}) {
    const clock = new ManualClock(1_700_000_000_000);
    const store = new MemoryReputationStore();
    const rep = createReputation({ store, clock, ...extra });
    return { clock, store, rep };
  }

  it('a clean network gets next with no findings', async () => {
    const { rep, clock } = setup();
    const v = await rep.check.run(session('192.0.2.1'), ctx(clock));
    expect(v).toEqual({ action: 'next' });
  });

  it('escalates: doubt with a delay hint, then 450 4.7.1, then 554 5.7.1', async () => {
    const { rep, clock } = setup();
    const s = session('192.0.2.1');
    const levels: string[] = [];
    const neighbour: string[] = [];
    for (let i = 1; i <= 30; i++) {
      await rep.recordOutcome(session(`192.0.2.${i}`), rejected()); // a new address of the /24 each time
      const level = (v: Awaited<ReturnType<typeof rep.check.run>>) =>
        v.action === 'next' ? (v.findings?.[0]?.doubt ? 'doubt' : 'clean') : String(v.reply.code);
      levels.push(level(await rep.check.run(session('192.0.2.1'), ctx(clock)))); // an offender
      // A neighbour in the same /24 that never offended is at most doubted.
      neighbour.push(level(await rep.check.run(session('192.0.2.200'), ctx(clock))));
    }
    expect(levels.slice(0, 4)).toEqual(['clean', 'clean', 'clean', 'clean']);
    expect(levels.slice(4, 14)).toEqual(Array(10).fill('doubt'));
    expect(levels.slice(14, 29)).toEqual(Array(15).fill('450'));
    expect(levels[29]).toBe('554');
    expect(neighbour.slice(4)).toEqual(Array(26).fill('doubt'));
    const v = await rep.check.run(s, ctx(clock));
    expect(v.action).toBe('reject');
    if (v.action !== 'next') {
      expect(v.reply).toMatchObject({ code: 554, enhanced: '5.7.1' });
      expect(v.reason).toContain('192.0.2.0/24');
    }
  });

  it('the doubt finding carries the greylist delay hint', async () => {
    const { rep, clock } = setup({ greylistDelay: 1200 });
    for (let i = 0; i < 5; i++) await rep.recordOutcome(session('192.0.2.1'), rejected());
    const v = await rep.check.run(session('192.0.2.1'), ctx(clock));
    expect(v.findings?.[0]).toMatchObject({
      check: 'reputation',
      doubt: true,
      tag: `${REPUTATION_DELAY_TAG}1200`,
    });
    expect(greylistDelayHint(v.findings ?? [])).toBe(1200);
    expect(greylistDelayHint([{ check: 'x', tag: 'dynamic' }])).toBeUndefined();
  });

  it('decays with the half-life: a 450 network is forgiven after a quiet day and a half', async () => {
    const { rep, clock } = setup();
    for (let i = 0; i < 20; i++) await rep.recordOutcome(session('192.0.2.1'), rejected());
    expect((await rep.check.run(session('192.0.2.1'), ctx(clock))).action).toBe('defer');
    clock.advance(24 * HOUR); // 20 -> 10: doubt
    const v = await rep.check.run(session('192.0.2.1'), ctx(clock));
    expect(v.action).toBe('next');
    expect(v.findings?.[0]?.doubt).toBe(true);
    clock.advance(24 * HOUR); // 10 -> 5: still doubt (>= 5)
    expect((await rep.check.run(session('192.0.2.1'), ctx(clock))).findings?.[0]?.doubt).toBe(true);
    clock.advance(HOUR);
    expect(await rep.check.run(session('192.0.2.1'), ctx(clock))).toEqual({ action: 'next' });
  });

  it('accepted mail earns the way back', async () => {
    const { rep, clock } = setup();
    for (let i = 0; i < 16; i++) await rep.recordOutcome(session('192.0.2.1'), rejected());
    expect((await rep.check.run(session('192.0.2.1'), ctx(clock))).action).toBe('defer');
    for (let i = 0; i < 2; i++) await rep.recordOutcome(session('192.0.2.1', 'data'), accepted);
    const v = await rep.check.run(session('192.0.2.1'), ctx(clock));
    expect(v.action).toBe('next');
    expect(await rep.score('192.0.2.1')).toBeCloseTo(14, 6);
  });

  it('its own verdicts, greylist deferrals and other deferrals do not feed the record', async () => {
    const { rep } = setup();
    for (let i = 0; i < 10; i++) {
      await rep.recordOutcome(session('192.0.2.1'), rejected('reputation'));
      await rep.recordOutcome(session('192.0.2.1'), deferred('greylist'));
      await rep.recordOutcome(session('192.0.2.1'), deferred('dnsbl'));
      // A next at RCPT is no delivery yet.
      await rep.recordOutcome(session('192.0.2.1', 'rcpt'), accepted);
    }
    expect(await rep.score('192.0.2.1')).toBe(0);
  });

  it('records greylist failures reported from outside the chain', async () => {
    const { rep } = setup();
    await rep.recordEvent('2001:db8::1', 'greylist-failure');
    await rep.recordEvent('2001:db8::2', 'greylist-failure');
    expect(await rep.score('2001:db8::ffff')).toBe(2);
    expect(await rep.score('2001:db8:0:1::1')).toBe(0);
  });

  it('records protocol violations (early talkers, unauthorized pipelining) reported by adapters', async () => {
    const { rep } = setup();
    await rep.recordEvent('198.51.100.7', 'protocol-violation');
    await rep.recordEvent('198.51.100.8', 'protocol-violation');
    expect(await rep.score('198.51.100.1')).toBe(2);
    const heavy = setup({ points: { protocolViolation: 5 } }).rep;
    await heavy.recordEvent('198.51.100.7', 'protocol-violation');
    expect(await heavy.score('198.51.100.7')).toBe(5);
  });

  it('the credit is floored: a long clean history cannot hide a burst of abuse', async () => {
    const { rep, clock } = setup();
    for (let i = 0; i < 1000; i++) await rep.recordOutcome(session('192.0.2.1', 'data'), accepted);
    expect(await rep.score('192.0.2.1')).toBe(-10);
    for (let i = 0; i < 25; i++) await rep.recordOutcome(session('192.0.2.1'), rejected());
    expect((await rep.check.run(session('192.0.2.1'), ctx(clock))).action).toBe('defer');
  });

  it('a store failure is next by default, 451 4.3.0 on request, never 5xx; recording never throws', async () => {
    const broken: ReputationStore = {
      score: async () => {
        throw new Error('down');
      },
      addScore: async () => {
        throw new Error('down');
      },
      hit: async () => 0,
      lock: async () => {},
      lockedUntil: async () => 0,
      close: async () => {},
    };
    const clock = new ManualClock(0);
    const a = createReputation({ store: broken, clock });
    expect((await a.check.run(session('192.0.2.1'), ctx(clock))).action).toBe('next');
    await expect(a.recordOutcome(session('192.0.2.1'), rejected())).resolves.toBeUndefined();
    const b = createReputation({ store: broken, clock, onStoreError: 'defer' });
    const v = await b.check.run(session('192.0.2.1'), ctx(clock));
    expect(v.action).toBe('defer');
    if (v.action !== 'next') expect(v.reply.code).toBe(451);
  });

  it('reads a memory store at once (scoreNow), with the verdicts it gives when awaited', async () => {
    const clock = new ManualClock(1_700_000_000_000);
    const store = new MemoryReputationStore();
    // The same records seen as a store over the network sees them: only the async interface.
    const remote: ReputationStore = {
      score: (...a) => store.score(...a),
      addScore: (...a) => store.addScore(...a),
      hit: (...a) => store.hit(...a),
      lock: (...a) => store.lock(...a),
      lockedUntil: (...a) => store.lockedUntil(...a),
      close: async () => {},
    };
    const local = createReputation({ store, clock });
    const far = createReputation({ store: remote, clock });
    for (let i = 1; i <= 32; i++) {
      await local.recordOutcome(session(`192.0.2.${i}`), rejected());
      for (const client of ['192.0.2.1', '192.0.2.200', '198.51.100.1']) {
        const now = local.check.run(session(client), ctx(clock));
        const later = far.check.run(session(client), ctx(clock));
        expect(now).not.toBeInstanceOf(Promise);
        expect(later).toBeInstanceOf(Promise);
        expect(now).toEqual(await later);
      }
    }
    // A memory store that fails: the verdict of a store failure, at once.
    const failing = new MemoryReputationStore();
    failing.scoreNow = () => {
      throw new Error('gone');
    };
    const f = createReputation({ store: failing, clock, onStoreError: 'defer' });
    const v = f.check.run(session('192.0.2.1'), ctx(clock));
    expect(v).not.toBeInstanceOf(Promise);
    expect(v).toMatchObject({ action: 'defer', reply: { code: 451 } });
  });

  it('refuses inconsistent thresholds', () => {
    const clock = new ManualClock(0);
    const store = new MemoryReputationStore();
    expect(() => createReputation({ store, clock, doubt: 20, defer: 10 })).toThrow(TypeError);
    expect(() => createReputation({ store, clock, halfLifeMs: 0 })).toThrow(TypeError);
  });

  it('in a chain, defers the deferred network at connect or at every RCPT', async () => {
    const clock = new ManualClock(0);
    const store = new MemoryReputationStore();
    const env = { clock, store };
    const check = reputationFactories.reputation?.({ defer: 3, doubt: 1, reject: 10 }, site(), env);
    if (!check) throw new Error('no factory');
    const rep = createReputation({ store, clock, defer: 3, doubt: 1, reject: 10 });
    for (let i = 0; i < 3; i++) await rep.recordOutcome(session('192.0.2.1'), rejected());
    // Judged at connect when each check runs at its own stage, at every RCPT with delay-reject.
    const early = chain([check], { clock, delayReject: false });
    const late = chain([check], { clock });
    for (const d of [
      await early.evaluate(session('192.0.2.1', 'connect')),
      await late.evaluate(session('192.0.2.1')),
    ]) {
      expect(d.action).toBe('defer');
      expect(d.reply?.text).toContain('Too many errors from your network; try later (reputation)');
      expect(d.trace[0]?.ifPermit).toBe(true); // DEFER_IF_PERMIT: later checks still judge it
    }
    // Its neighbour 192.0.2.9 never offended: doubted (a greylist finding), not deferred.
    const n = await late.evaluate(session('192.0.2.9'));
    expect(n.action).toBe('next');
    expect(n.findings).toEqual([expect.objectContaining({ check: 'reputation', doubt: true })]);
  });

  it('the factory refuses unknown or mistyped options', () => {
    const env = { clock: new ManualClock(0), store: new MemoryReputationStore() };
    expect(() => reputationFactories.reputation?.({ halfLife: 5 }, site(), env)).toThrow(/unknown option/);
    expect(() => reputationFactories.reputation?.({ doubt: '5' }, site(), env)).toThrow(/must be a number/);
  });
});
