/**
 * The time budget of an SMTP command's answer in the smtp-server adapter: what does not watch the
 * deadline (a check or a store that hangs) is answered 451 4.3.0 after budget plus grace, loudly;
 * an `enrich` that hangs no longer holds a command past the command's budget; bad budgets are
 * refused. Timings bound answers from above only: MARGIN 1000 ms over budget + 250 ms grace, for a
 * loaded machine.
 */
import { type Check, chain, currentDeadline, next } from '@mxguard/core';
import { FakeResolver, heloResolves } from '@mxguard/dns';
import { type GatewayOptions, smtpServerHooks } from '@mxguard/smtp';
import { afterEach, describe, expect, it } from 'vitest';
import { MemoryLogger, RawClient, testGateway } from './helpers.js';

const MARGIN = 1000;
const GRACE = 250;
const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0)) await c();
});

const gateway = (overrides: Partial<GatewayOptions> & Pick<GatewayOptions, 'chain'>) =>
  testGateway(overrides, cleanups);

const hangs: Check = { name: 'hangs', stage: 'rcpt', run: () => new Promise(() => {}) };

async function timedCmd(c: RawClient, line: string): Promise<{ reply: string; ms: number }> {
  const started = performance.now();
  const reply = await c.cmd(line);
  return { reply, ms: performance.now() - started };
}

/** A client's RCPT after greeting, EHLO and MAIL: its reply and how long it took. */
async function rcptReply(port: number): Promise<{ reply: string; ms: number }> {
  const c = await RawClient.open(port);
  try {
    await c.line();
    await c.cmd('EHLO c.example.net');
    await c.cmd('MAIL FROM:<a@sender.test>');
    return await timedCmd(c, 'RCPT TO:<user@example.com>');
  } finally {
    c.close();
  }
}

describe('the budget of a command answer', () => {
  it('a check that never answers: 451 4.3.0 after budget plus grace, logged as late', async () => {
    const { gw, log } = await gateway({ chain: chain([hangs]), budgetMs: 300 });
    const c = await RawClient.open(gw.port);
    await c.line();
    await c.cmd('EHLO c.example.net');
    expect(await c.cmd('MAIL FROM:<a@sender.test>')).toMatch(/^250 /);
    const { reply, ms } = await timedCmd(c, 'RCPT TO:<user@example.com>');
    c.close();
    expect(reply).toMatch(/^451 4\.3\.0 /);
    expect(ms).toBeLessThan(300 + GRACE + MARGIN);
    expect(log.events('decision-late')).toEqual([expect.objectContaining({ hook: 'rcpt', ms: 300 + GRACE })]);
  });

  it('deadlineContext false: the checks find no deadline to read, and the budget still holds', async () => {
    const found: boolean[] = [];
    const reads: Check = {
      name: 'reads',
      stage: 'rcpt',
      run: async () => {
        found.push(currentDeadline() !== undefined);
        return next();
      },
    };
    for (const deadlineContext of [true, false]) {
      const { gw } = await gateway({ chain: chain([reads]), deadlineContext });
      expect((await rcptReply(gw.port)).reply).toMatch(/^250 /);
    }
    expect(found).toEqual([true, false]);
    const { gw } = await gateway({ chain: chain([hangs]), budgetMs: 300, deadlineContext: false });
    const { reply, ms } = await rcptReply(gw.port);
    expect(reply).toMatch(/^451 4\.3\.0 /);
    expect(ms).toBeLessThan(300 + GRACE + MARGIN);
  });

  it('DNS held forever by a resolver that ignores deadlines is late too, and still a 4xx', async () => {
    const dns = new FakeResolver().hold(new Promise(() => {}));
    const { gw } = await gateway({ chain: chain([heloResolves(dns)]), budgetMs: 300 });
    const { reply, ms } = await rcptReply(gw.port);
    expect(reply).toMatch(/^4\d\d /);
    expect(ms).toBeLessThan(300 + GRACE + MARGIN);
  });

  it('an enrich that hangs is cut at the command budget, before its own (longer) timeout', async () => {
    const seen: unknown[] = [];
    const record: Check = {
      name: 'record',
      stage: 'rcpt',
      run: (s) => {
        seen.push(s.rdns);
        return next();
      },
    };
    const { gw } = await gateway({
      chain: chain([record]),
      budgetMs: 300,
      enrichTimeoutMs: 60_000,
      enrich: () => new Promise(() => {}),
    });
    const c = await RawClient.open(gw.port);
    await c.line();
    await c.cmd('EHLO c.example.net');
    const mail = await timedCmd(c, 'MAIL FROM:<a@sender.test>');
    expect(mail.reply).toMatch(/^250 /);
    expect(mail.ms).toBeLessThan(300 + GRACE + MARGIN);
    const rcpt = await timedCmd(c, 'RCPT TO:<user@example.com>');
    c.close();
    expect(rcpt.reply).toMatch(/^250 /);
    expect(rcpt.ms).toBeLessThan(300 + GRACE + MARGIN);
    expect(seen).toEqual([{ names: [], error: 'temporary' }]);
  });

  it('refuses a budget that is not a positive number of milliseconds', () => {
    for (const budgetMs of [0, -5, Number.NaN]) {
      expect(() => smtpServerHooks({ chain: chain([]), log: new MemoryLogger(), budgetMs })).toThrow(
        /budgetMs/,
      );
    }
  });
});
