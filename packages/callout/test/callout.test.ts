import {
  type CalloutOptions,
  callout,
  calloutFactories,
  MemoryCalloutStore,
  type Probe,
  RedisCalloutStore,
} from '@mxguard/callout';
import { chain, ManualClock, type Session, silentLogger, site } from '@mxguard/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type RedisServer, startRedis } from '../../greylist/test/redis-server.js';
import { zoneResolver } from './helpers/dns.js';
import { startSmtp, type TestSmtp } from './helpers/smtp.js';

const S = 1000;
const H = 3600 * S;
const D = 24 * H;

let smtp: TestSmtp;
let redis: RedisServer;
beforeAll(async () => {
  [smtp, redis] = await Promise.all([
    startSmtp({ users: ['alice@forged.example'] }),
    startRedis({ appendfsync: 'no' }),
  ]);
});
afterAll(async () => {
  await Promise.all([smtp?.stop(), redis?.dispose()]);
});

const zone = {
  'forged.example': { MX: [{ priority: 10, exchange: 'mx.forged.example' }] },
  'mx.forged.example': { A: ['127.0.0.1'] },
};
const ctx = (clock: ManualClock) => ({ clock, log: silentLogger, findings: [] });
const mail = (from: string, clientAddress = '192.0.2.10'): Session => ({
  clientAddress,
  stage: 'mail',
  helo: 'client.example.net',
  mailFrom: from,
});

function setup(over: Partial<CalloutOptions> = {}) {
  const clock = new ManualClock(1_700_000_000_000);
  const resolver = zoneResolver(zone);
  const check = callout({
    domains: ['forged.example'],
    store: new MemoryCalloutStore(),
    clock,
    resolver,
    port: smtp.port,
    allowPrivateTargets: true,
    helo: 'mx.test.example',
    ...over,
  });
  return { clock, resolver, check };
}

describe('callout check against a real SMTP server', () => {
  it('an existing sender passes; the answer is cached (one probe)', async () => {
    const { check, clock } = setup();
    const before = smtp.connections;
    const v = await check.run(mail('alice@forged.example'), ctx(clock));
    expect(v.action).toBe('next');
    expect(v.reason).toContain('verified');
    clock.advance(6 * D);
    expect((await check.run(mail('alice@forged.example'), ctx(clock))).action).toBe('next');
    expect(smtp.connections - before).toBe(1);
  });

  it('an unknown sender: 450 4.1.7 as Postfix reject_unverified_sender, cached for 3 h', async () => {
    const { check, clock } = setup();
    const before = smtp.connections;
    const v = await check.run(mail('nobody@forged.example'), ctx(clock));
    expect(v.action).toBe('defer');
    if (v.action !== 'next') {
      expect(v.reply.code).toBe(450);
      expect(v.reply.enhanced).toBe('4.1.7');
      expect(v.reply.text).toMatch(
        /^<nobody@forged\.example>: Sender address rejected: undeliverable address: host /,
      );
      expect(v.ifPermit).toBeUndefined();
    }
    clock.advance(3 * H);
    expect((await check.run(mail('nobody@forged.example'), ctx(clock))).action).toBe('defer');
    expect(smtp.connections - before).toBe(1);
    // After the negative refresh time a new probe goes out; the old answer is used meanwhile.
    clock.advance(1);
    expect((await check.run(mail('nobody@forged.example'), ctx(clock))).action).toBe('defer');
  });

  it('rejectCode 550 makes it a 550 5.1.7 reject', async () => {
    const { check, clock } = setup({ rejectCode: 550 });
    const v = await check.run(mail('nobody2@forged.example'), ctx(clock));
    expect(v.action).toBe('reject');
    if (v.action !== 'next') expect(v.reply).toMatchObject({ code: 550, enhanced: '5.1.7' });
  });

  it('a hung MX gives 450 defer_if_permit, never 5xx; with tempfailAction next, next', async () => {
    smtp.hang = true;
    try {
      const a = setup({ waitMs: 200, probeTimeoutMs: 300, rejectCode: 550 });
      const v = await a.check.run(mail('slow@forged.example'), ctx(a.clock));
      expect(v.action).toBe('defer');
      if (v.action !== 'next') {
        expect(v.reply).toMatchObject({ code: 450, enhanced: '4.1.7' });
        expect(v.ifPermit).toBe(true);
        expect(v.reply.text).toContain('unverified address');
      }
      const b = setup({ waitMs: 200, probeTimeoutMs: 300, tempfailAction: 'next' });
      expect((await b.check.run(mail('slow2@forged.example'), ctx(b.clock))).action).toBe('next');
    } finally {
      smtp.hang = false;
    }
  });

  it('works with the Redis store too', async () => {
    const store = new RedisCalloutStore({ url: redis.url, prefix: 'chk:' });
    try {
      const { check, clock } = setup({ store });
      expect((await check.run(mail('alice@forged.example'), ctx(clock))).action).toBe('next');
      expect((await check.run(mail('nobody@forged.example'), ctx(clock))).action).toBe('defer');
      const rec = await store.get('nobody@forged.example', clock.now());
      expect(rec).toMatchObject({ status: 'unknown-user', probed: 0 });
    } finally {
      await store.close();
    }
  });
});

describe('callout check with an injected probe', () => {
  function counting(answer: Probe): Probe & { calls: string[][] } {
    const calls: string[][] = [];
    const p = (async (targets, address, o) => {
      calls.push([address, ...targets.map((t) => `${t.host}[${t.address}]`)]);
      return answer(targets, address, o);
    }) as Probe & { calls: string[][] };
    p.calls = calls;
    return p;
  }
  const exists: Probe = async () => ({ status: 'exists', text: '250 ok' });

  it('is off without listed domains and never probes unlisted ones', async () => {
    const probe = counting(exists);
    const off = setup({ domains: [], probe });
    expect(await off.check.run(mail('x@forged.example'), ctx(off.clock))).toEqual({ action: 'next' });
    const on = setup({ probe });
    expect((await on.check.run(mail('x@other.example'), ctx(on.clock))).action).toBe('next');
    expect((await on.check.run(mail(''), ctx(on.clock))).action).toBe('next');
    expect(probe.calls).toEqual([]);
    expect(on.resolver.calls).toEqual([]);
  });

  it('never probes loopback or private targets unless allowed, nor the client itself', async () => {
    const probe = counting(exists);
    const a = setup({ probe, allowPrivateTargets: false });
    const v = await a.check.run(mail('x@forged.example'), ctx(a.clock));
    expect(v.action).toBe('next');
    expect(v.reason).toContain('a non-public address');
    const b = setup({ probe });
    const w = await b.check.run(mail('y@forged.example', '127.0.0.1'), ctx(b.clock));
    expect(w.reason).toContain("the client's own address");
    expect(probe.calls).toEqual([]);
  });

  it('at most probesPerMinute probes a domain per minute, then 4xx; the bucket refills with time', async () => {
    const probe = counting(exists);
    const { check, clock } = setup({ probe, probesPerMinute: 3 });
    const actions: string[] = [];
    for (let i = 0; i < 5; i++)
      actions.push((await check.run(mail(`u${i}@forged.example`), ctx(clock))).action);
    expect(actions).toEqual(['next', 'next', 'next', 'defer', 'defer']);
    const held = await check.run(mail('u5@forged.example'), ctx(clock));
    if (held.action !== 'next') {
      expect(held.reply.code).toBe(450);
      expect(held.reply.text).toContain('rate limit for forged.example reached');
    }
    expect(probe.calls.length).toBe(3);
    clock.advance(20 * S); // one token back (3 a minute)
    expect((await check.run(mail('u9@forged.example'), ctx(clock))).action).toBe('next');
    expect((await check.run(mail('u10@forged.example'), ctx(clock))).action).toBe('defer');
    expect(probe.calls.length).toBe(4);
  });

  it('at most maxInFlight probes at once; concurrent sessions for one address share a probe', async () => {
    let release!: () => void;
    const gate = new Promise<void>((r) => {
      release = r;
    });
    let active = 0;
    let peak = 0;
    const probe = counting(async () => {
      active++;
      peak = Math.max(peak, active);
      await gate;
      active--;
      return { status: 'exists', text: '250' };
    });
    const { check, clock } = setup({ probe, maxInFlight: 2, probesPerMinute: 100, waitMs: 5000 });
    const runs = [
      ...Array.from({ length: 3 }, () => check.run(mail('same@forged.example'), ctx(clock))),
      ...Array.from({ length: 3 }, (_, i) => check.run(mail(`d${i}@forged.example`), ctx(clock))),
    ];
    await new Promise((r) => setTimeout(r, 50));
    expect(peak).toBeLessThanOrEqual(2);
    release();
    const vs = await Promise.all(runs);
    expect(vs.every((v) => v.action === 'next')).toBe(true);
    expect(probe.calls.filter((c) => c[0] === 'same@forged.example').length).toBe(1);
    expect(probe.calls.length).toBe(4);
    expect(peak).toBeLessThanOrEqual(2);
  });

  it('a temporary or throwing probe never overwrites a good entry; a store failure is a 4xx', async () => {
    let answer: 'exists' | 'throw' = 'exists';
    const probe: Probe = async () => {
      if (answer === 'throw') throw new Error('boom');
      return { status: 'exists', text: '250' };
    };
    const { check, clock } = setup({ probe });
    expect((await check.run(mail('a@forged.example'), ctx(clock))).action).toBe('next');
    answer = 'throw';
    clock.advance(8 * D); // refresh due
    expect((await check.run(mail('a@forged.example'), ctx(clock))).action).toBe('next');
    await new Promise((r) => setTimeout(r, 10));
    clock.advance(2000 * S);
    expect((await check.run(mail('a@forged.example'), ctx(clock))).action).toBe('next');

    const broken = setup({
      probe,
      store: {
        get: async () => {
          throw new Error('down');
        },
        set: async () => {},
        close: async () => {},
      },
    });
    const v = await broken.check.run(mail('a@forged.example'), ctx(broken.clock));
    expect(v.action).toBe('defer');
    if (v.action !== 'next') expect(v.reply.code).toBeLessThan(500);
  });

  it('an MX lookup that fails temporarily is a 4xx; a null MX or unacceptable targets is next', async () => {
    const probe = counting(exists);
    const clock = new ManualClock(1);
    const mk = (resolver: ReturnType<typeof zoneResolver>) =>
      callout({ domains: ['forged.example'], store: new MemoryCalloutStore(), clock, resolver, probe });
    const t = await mk(zoneResolver(zone, ['forged.example'])).run(mail('a@forged.example'), ctx(clock));
    expect(t.action).toBe('defer');
    const n = await mk(zoneResolver({ 'forged.example': { MX: [{ priority: 0, exchange: '' }] } })).run(
      mail('a@forged.example'),
      ctx(clock),
    );
    expect(n.action).toBe('next');
    // No MX: the domain's own A record is the implicit MX (RFC 5321 5.1); a public address is probed.
    const i = await mk(zoneResolver({ 'forged.example': { A: ['192.0.2.25'] } })).run(
      mail('a@forged.example'),
      ctx(clock),
    );
    expect(i.action).toBe('next');
    expect(probe.calls).toEqual([['a@forged.example', 'forged.example[192.0.2.25]']]);
  });

  it('in a chain, the tempfail is defer-if-permit: a later reject still wins', async () => {
    const probe: Probe = async () => ({ status: 'temporary', text: 'timeout' });
    const { check, clock } = setup({ probe });
    const rejecter = {
      name: 'later',
      stage: 'mail' as const,
      run: () => ({
        action: 'reject' as const,
        reply: { code: 554, enhanced: '5.7.1', text: 'no' },
        reason: 'test',
      }),
    };
    const d = await chain([check, rejecter], { clock, delayReject: false }).evaluate(
      mail('t@forged.example'),
    );
    expect(d.action).toBe('reject');
    const e = await chain([check], { clock, delayReject: false }).evaluate(mail('t2@forged.example'));
    expect(e.action).toBe('defer');
    expect(e.reply?.code).toBe(450);
  });
});

describe('callout factory', () => {
  it('builds from plain JSON options and refuses unknown ones', async () => {
    const clock = new ManualClock(1);
    const env = { clock, resolver: zoneResolver(zone) };
    const check = calloutFactories.callout?.(
      { domains: ['forged.example'], port: smtp.port, allowPrivateTargets: true },
      site({ ourHosts: ['mx.test.example'] }),
      env,
    );
    if (!check) throw new Error('no factory');
    expect(check.name).toBe('callout');
    expect((await check.run(mail('alice@forged.example'), ctx(clock))).action).toBe('next');
    expect(() => calloutFactories.callout?.({ domain: ['x'] }, site(), env)).toThrow(/unknown option/);
    expect(() => calloutFactories.callout?.({ port: '25' }, site(), env)).toThrow(/must be a number/);
    expect(() => calloutFactories.callout?.({ tempfailAction: 'reject' }, site(), env)).toThrow(TypeError);
  });
});
