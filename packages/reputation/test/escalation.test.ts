/**
 * Replays of the reoffender escalation through a chain, as the adapters run it: the reputation
 * check first, the checks that prove something false after it, the selective greylist last, and
 * every decision fed back with `recordOutcome`. The clock is injected; nothing sleeps.
 */
import { chain, type Decision, heloClaimsUs, ManualClock, type Session, site } from '@mxguard/core';
import { greylistCheck, memoryStore } from '@mxguard/greylist';
import { createReputation, MemoryReputationStore } from '@mxguard/reputation';
import { describe, expect, it } from 'vitest';

const MINUTE = 60_000;

function setup() {
  const clock = new ManualClock(1_700_000_000_000);
  const rep = createReputation({ store: new MemoryReputationStore(), clock });
  const greylist = greylistCheck({ store: memoryStore({ clock }) }, { mode: 'selective' });
  const policy = chain([rep.check, heloClaimsUs({}, site({ ourDomains: ['example.com'] })), greylist], {
    clock,
  });
  /** One RCPT TO judged and fed back, as the smtp-server adapter and the policy server do. */
  async function rcpt(s: Omit<Session, 'stage'>): Promise<Decision> {
    const session: Session = { ...s, stage: 'rcpt' };
    const d = await policy.evaluate(session);
    await rep.recordOutcome(session, d);
    return d;
  }
  return { clock, rep, rcpt };
}

const said = (d: Decision) => `${d.reply?.code ?? 'next'} ${d.check ?? ''}`.trim();

describe('reputation escalation, replayed', () => {
  it('60 sessions from 60 addresses of one /24, each HELO localhost, reach the 554 tier', async () => {
    const { clock, rep, rcpt } = setup();
    const answers: string[][] = [];
    for (let i = 1; i <= 60; i++) {
      const s = {
        clientAddress: `203.0.113.${i}`,
        helo: 'localhost',
        mailFrom: `x${i}@spam.example`,
        rcptTo: 'a@example.com',
      };
      // A spam engine tries a second recipient in the same session.
      const first = await rcpt(s);
      const second = await rcpt({ ...s, rcptTo: 'b@example.com' });
      answers.push([said(first), said(second)]);
      clock.advance(MINUTE);
    }
    // Every fresh address is judged by the checks on what it said: HELO localhost is proven false.
    for (const [first] of answers) expect(first).toBe('550 helo-claims-us');
    // Its own offences keep counting once the network is past the 450 tier (DEFER_IF_PERMIT lets
    // helo-claims-us refuse and be counted), so the network climbs to the 554 tier and stays there.
    const seconds = answers.map(([, second]) => second);
    const top = seconds.indexOf('554 reputation');
    expect(top).toBeGreaterThan(0);
    expect(top).toBeLessThan(20);
    expect(seconds.slice(top)).toEqual(Array(60 - top).fill('554 reputation'));
    expect(seconds.slice(0, top)).toEqual(Array(top).fill('550 helo-claims-us'));
    expect(await rep.score('203.0.113.1')).toBeGreaterThanOrEqual(30);
    // An address that offended and comes back is refused by reputation at once.
    const back = await rcpt({
      clientAddress: '203.0.113.7',
      helo: 'mail.example.net',
      mailFrom: 'x@spam.example',
      rcptTo: 'c@example.com',
    });
    expect(said(back)).toBe('554 reputation');
    expect(back.reply?.text).toContain('Too many errors from your network');
  });

  it('a neighbour in that /24 that never offended is only greylisted, and gets through on retry', async () => {
    const { clock, rep, rcpt } = setup();
    for (let i = 1; i <= 60; i++) {
      await rcpt({
        clientAddress: `203.0.113.${i}`,
        helo: 'localhost',
        mailFrom: `x${i}@spam.example`,
        rcptTo: 'a@example.com',
      });
      clock.advance(MINUTE);
    }
    expect(await rep.score('203.0.113.250')).toBeGreaterThanOrEqual(30); // the network's record
    const neighbour = {
      clientAddress: '203.0.113.250',
      helo: 'mail.neighbour.example',
      mailFrom: 'alice@neighbour.example',
      rcptTo: 'bob@example.com',
    };
    const first = await rcpt(neighbour);
    expect(said(first)).toBe('450 greylist');
    expect(first.reply?.enhanced).toBe('4.2.0');
    expect(first.findings.some((f) => f.check === 'reputation' && f.doubt)).toBe(true);
    // The reputation's doubt asks for a longer delay (900 s) than postgrey's 300 s.
    clock.advance(5 * MINUTE + 1000);
    expect(said(await rcpt(neighbour))).toBe('450 greylist');
    clock.advance(10 * MINUTE);
    const retried = await rcpt(neighbour);
    expect(retried.action).toBe('next');
    // Its delivered message earns its own record credit; it never became an offender.
    await rep.recordOutcome({ ...neighbour, stage: 'data' }, { action: 'next', trace: [], findings: [] });
    clock.advance(MINUTE);
    expect((await rcpt({ ...neighbour, rcptTo: 'carol@example.com' })).action).not.toBe('reject');
  });
});
