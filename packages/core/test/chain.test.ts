import {
  accept,
  type Check,
  type CheckContext,
  chain,
  defer,
  isValidReply,
  ManualClock,
  next,
  reject,
  reply,
  type Session,
  type Stage,
  soften,
  type Verdict,
  weigh,
} from '@mxguard/core';
import { describe, expect, it } from 'vitest';

const r554 = reply(554, '5.7.1', 'Access denied');
const r450 = reply(450, '4.7.1', 'Try later');

function check(
  name: string,
  stage: Stage,
  verdict: Verdict | ((s: Session, c: CheckContext) => Verdict),
): Check {
  return { name, stage, run: (s, c) => (typeof verdict === 'function' ? verdict(s, c) : verdict) };
}

const at = (stage: Stage, extra: Partial<Session> = {}): Session => ({
  clientAddress: '192.0.2.1',
  helo: 'mail.example.net',
  mailFrom: 'a@example.net',
  rcptTo: 'b@example.com',
  stage,
  ...extra,
});

describe('reply', () => {
  it('refuses a 5xx with a 4.x.x enhanced code and the reverse (RFC 3463 class must match)', () => {
    expect(() => reply(550, '4.7.1', 'x')).toThrow(TypeError);
    expect(() => reply(450, '5.7.1', 'x')).toThrow(TypeError);
    expect(() => reply(550, '5.7', 'x')).toThrow(TypeError);
    expect(() => reply(550, '5.7.1', 'a\r\nb')).toThrow(TypeError);
    expect(reply(504, '5.5.2', 'ok')).toEqual({ code: 504, enhanced: '5.5.2', text: 'ok' });
  });
  it('softens a 5xx into a 4xx that RFC 5321 defines', () => {
    expect(soften(reply(554, '5.7.1', 't'))).toEqual({ code: 450, enhanced: '4.7.1', text: 't' });
    expect(soften(reply(501, '5.5.2', 't'))).toEqual({ code: 450, enhanced: '4.5.2', text: 't' });
    expect(soften(reply(552, '5.3.4', 't'))).toEqual({ code: 452, enhanced: '4.3.4', text: 't' });
    expect(soften(r450)).toBe(r450);
  });
  it('reject and defer refuse replies of the wrong class', () => {
    expect(() => reject(r450, 'x')).toThrow(TypeError);
    expect(() => defer(r554, 'x')).toThrow(TypeError);
  });
});

describe('chain: Postfix restriction-list semantics', () => {
  it('the first verdict other than next decides, and the trace lists each step', async () => {
    const c = chain([
      check('a', 'connect', next('clean')),
      check('b', 'helo', reject(r554, 'b found it')),
      check('c', 'rcpt', accept('never reached')),
    ]);
    const d = await c.evaluate(at('rcpt'));
    expect(d.action).toBe('reject');
    expect(d.check).toBe('b');
    expect(d.reply?.code).toBe(554);
    expect(d.reply?.text).toContain('(b)');
    expect(d.trace.map((s) => [s.check, s.action])).toEqual([
      ['a', 'next'],
      ['b', 'reject'],
    ]);
    expect(d.trace.every((s) => typeof s.ms === 'number' && s.ms >= 0)).toBe(true);
  });

  it('accept (OK) stops the list: later rejections are not reached', async () => {
    const c = chain([check('ok', 'connect', accept('trusted')), check('no', 'rcpt', reject(r554, 'x'))]);
    const d = await c.evaluate(at('rcpt'));
    expect(d.action).toBe('accept');
    expect(d.reply?.code).toBe(250);
  });

  it('all next gives next (DUNNO), with no reply', async () => {
    const d = await chain([check('a', 'connect', next())]).evaluate(at('rcpt'));
    expect(d.action).toBe('next');
    expect(d.reply).toBeUndefined();
  });

  it('delay-reject: connect/HELO/MAIL checks are judged at RCPT, not before', async () => {
    const c = chain([check('helo-x', 'helo', reject(r554, 'bad helo'))]);
    expect((await c.evaluate(at('helo'))).action).toBe('next');
    expect((await c.evaluate(at('mail'))).action).toBe('next');
    expect((await c.evaluate(at('rcpt'))).action).toBe('reject');
  });

  it('without delay-reject each check is judged at its own stage only', async () => {
    const c = chain(
      [check('helo-x', 'helo', reject(r554, 'bad helo')), check('r', 'rcpt', reject(r554, 'r'))],
      {
        delayReject: false,
      },
    );
    expect((await c.evaluate(at('connect'))).action).toBe('next');
    const h = await c.evaluate(at('helo'));
    expect([h.action, h.check]).toEqual(['reject', 'helo-x']);
    const r = await c.evaluate(at('rcpt'));
    expect([r.action, r.check]).toEqual(['reject', 'r']);
  });

  it('data-stage checks run only at DATA', async () => {
    const c = chain([check('d', 'data', reject(r554, 'body')), check('r', 'rcpt', next())]);
    expect((await c.evaluate(at('rcpt'))).action).toBe('next');
    expect((await c.evaluate(at('data'))).check).toBe('d');
  });

  it('warn mode logs what it would have done and goes on (warn_if_reject)', async () => {
    const warned: object[] = [];
    const log = { debug() {}, info() {}, warn: (o: object) => warned.push(o), error() {} };
    const c = chain(
      [{ check: check('w', 'connect', reject(r554, 'would')), mode: 'warn' }, check('z', 'rcpt', next())],
      {
        log,
      },
    );
    const d = await c.evaluate(at('rcpt'));
    expect(d.action).toBe('next');
    expect(d.trace[0]).toMatchObject({ check: 'w', action: 'reject', warn: true, code: 554 });
    expect(warned).toHaveLength(1);
    expect(warned[0]).toMatchObject({ check: 'w', would: 'reject' });
  });

  it('warn mode drops findings, so a warned doubt cannot trigger the greylist', async () => {
    const doubt = next('dyn', [{ check: 'w', tag: 'dynamic', doubt: true }]);
    const seen: number[] = [];
    const c = chain([
      { check: check('w', 'connect', doubt), mode: 'warn' },
      check('g', 'rcpt', (_s, ctx) => {
        seen.push(ctx.findings.length);
        return next();
      }),
    ]);
    const d = await c.evaluate(at('rcpt'));
    expect(seen).toEqual([0]);
    expect(d.findings).toHaveLength(0);
  });

  it('defer_if_permit becomes a 4xx only if nothing later rejects', async () => {
    const soft = defer(r450, 'doubt', true);
    const later = await chain([
      check('s', 'connect', soft),
      check('r', 'rcpt', reject(r554, 'hard')),
    ]).evaluate(at('rcpt'));
    expect([later.action, later.check, later.reply?.code]).toEqual(['reject', 'r', 554]);
    const end = await chain([check('s', 'connect', soft), check('n', 'rcpt', next())]).evaluate(at('rcpt'));
    expect([end.action, end.check, end.reply?.code]).toEqual(['defer', 's', 450]);
    // An explicit OK later is a permit too: Postfix still defers.
    const ok = await chain([check('s', 'connect', soft), check('ok', 'rcpt', accept('x'))]).evaluate(
      at('rcpt'),
    );
    expect([ok.action, ok.check]).toEqual(['defer', 's']);
  });

  it('a check that throws becomes 451 4.3.5, never a 5xx, and is logged', async () => {
    const errors: object[] = [];
    const log = { debug() {}, info() {}, warn() {}, error: (o: object) => errors.push(o) };
    const boom: Check = {
      name: 'boom',
      stage: 'connect',
      run() {
        throw new Error('store down');
      },
    };
    const d = await chain([boom], { log }).evaluate(at('rcpt'));
    expect([d.action, d.reply?.code, d.reply?.enhanced]).toEqual(['defer', 451, '4.3.5']);
    expect(errors).toHaveLength(1);
    const skipped = await chain([boom, check('n', 'rcpt', reject(r554, 'x'))], { onError: 'next' }).evaluate(
      at('rcpt'),
    );
    expect(skipped.check).toBe('n');
    expect(skipped.trace[0]?.action).toBe('error');
  });

  it('reply texts name the check and the help contact, on one bounded line', async () => {
    const long = reply(554, '5.7.1', 'x'.repeat(1000));
    const d = await chain([check('helo-fqdn', 'helo', reject(long, 'x'))], {
      help: { url: 'https://example.com/help', contact: 'postmaster@example.com' },
    }).evaluate(at('rcpt'));
    expect(d.reply?.text).toMatch(
      /\(helo-fqdn; help: https:\/\/example\.com\/help or postmaster@example\.com\)$/,
    );
    expect(d.reply!.text.length).toBeLessThanOrEqual(400);
    expect(isValidReply(d.reply!)).toBe(true);
  });

  it('refuses the same check twice', () => {
    expect(() => chain([check('a', 'connect', next()), check('a', 'rcpt', next())])).toThrow(TypeError);
  });

  it('checks see the clock passed in', async () => {
    const clock = new ManualClock(1_000);
    const seen: number[] = [];
    await chain(
      [
        check('t', 'connect', (_s, ctx) => {
          seen.push(ctx.clock.now());
          return next();
        }),
      ],
      { clock },
    ).evaluate(at('rcpt'));
    expect(seen).toEqual([1_000]);
  });
});

describe('weigh', () => {
  const scored = (name: string, score: number): Check =>
    check(name, 'connect', next(undefined, [{ check: name, tag: 'hit', score }]));

  it('sums scores against the reject and defer thresholds', async () => {
    const w = (checks: Check[]) => chain([weigh({ checks, reject: 5, defer: 3 })]);
    expect((await w([scored('a', 1), scored('b', 1)]).evaluate(at('rcpt'))).action).toBe('next');
    const d = await w([scored('a', 2), scored('b', 1)]).evaluate(at('rcpt'));
    expect([d.action, d.reply?.code, d.reply?.enhanced]).toEqual(['defer', 450, '4.7.1']);
    const r = await w([scored('a', 4), scored('b', 1)]).evaluate(at('rcpt'));
    expect([r.action, r.reply?.code, r.check]).toEqual(['reject', 554, 'weigh']);
    expect(r.reason).toContain('a:hit=4');
  });

  it('negative weights (allowlists) pull the total down', async () => {
    const d = await chain([weigh({ checks: [scored('bl', 6), scored('wl', -3)], reject: 5 })]).evaluate(
      at('rcpt'),
    );
    expect(d.action).toBe('next');
  });

  it('counts earlier findings of the chain unless told not to', async () => {
    const earlier = scored('e', 4);
    const inc = await chain([earlier, weigh({ checks: [scored('a', 2)], reject: 5 })]).evaluate(at('rcpt'));
    expect(inc.action).toBe('reject');
    const exc = await chain([
      earlier,
      weigh({ checks: [scored('a', 2)], reject: 5, includeEarlier: false }),
    ]).evaluate(at('rcpt'));
    expect(exc.action).toBe('next');
  });

  it('refuses a defer threshold at or above the reject threshold', () => {
    expect(() => weigh({ checks: [], reject: 3, defer: 3 })).toThrow(TypeError);
  });
});
