import { chain, isValidReply, ManualClock, type Session, site } from '@mxguard/core';
import { describe, expect, it } from 'vitest';
// The lead re-exports these from @mxguard/core; until then they are imported from the sources.
import { rdnsDynamic, rdnsFactories, rdnsMissing } from '../src/rdns/index.js';

const clock = new ManualClock(1_700_000_000_000);

function session(clientAddress: string, rdns: Session['rdns']): Session {
  const s: Session = { clientAddress, stage: 'rcpt', helo: 'client.example', mailFrom: 'a@example.org' };
  return rdns === undefined ? s : { ...s, rdns };
}

const comcast = 'c-73-12-34-56.hsd1.ca.comcast.net';
const dynamicClient = session('73.12.34.56', { names: [comcast], verified: comcast });

describe('rdns-dynamic in a chain', () => {
  const c = chain([rdnsDynamic()], { clock });

  it('defers a dynamic-looking name with 450 4.7.1 by default, naming the check and the evidence', async () => {
    const d = await c.evaluate(dynamicClient);
    expect(d.action).toBe('defer');
    expect(d.check).toBe('rdns-dynamic');
    expect(d.reply).toEqual({
      code: 450,
      enhanced: '4.7.1',
      text: `Client host rejected: dynamic-looking reverse DNS ${comcast}; please use your provider's mail server (rdns-dynamic)`,
    });
    expect(d.reason).toBe(
      `dynamic-looking reverse DNS ${comcast}: address in host part as decimal octets; access word "hsd"`,
    );
  });

  it('rejects with 550 5.7.1 when configured to', async () => {
    const d = await chain([rdnsDynamic({ action: 'reject' })], { clock }).evaluate(dynamicClient);
    expect(d.action).toBe('reject');
    expect(d.reply?.code).toBe(550);
    expect(d.reply?.enhanced).toBe('5.7.1');
  });

  it('leaves a finding for weigh() or the greylist when configured to score or greylist', async () => {
    const scored = await chain([rdnsDynamic({ action: 'score', score: 3 })], { clock }).evaluate(
      dynamicClient,
    );
    expect(scored.action).toBe('next');
    expect(scored.findings).toEqual([{ check: 'rdns-dynamic', tag: 'dynamic', score: 3 }]);
    const grey = await chain([rdnsDynamic({ action: 'greylist' })], { clock }).evaluate(dynamicClient);
    expect(grey.action).toBe('next');
    expect(grey.findings).toEqual([{ check: 'rdns-dynamic', tag: 'dynamic', doubt: true, score: 1 }]);
  });

  it('lets a mail server through', async () => {
    const name = 'mail-wr1-f54.google.com';
    const d = await c.evaluate(session('209.85.221.54', { names: [name], verified: name }));
    expect(d.action).toBe('next');
    expect(d.trace[0]?.reason).toBe('reverse DNS mailserver: mail-role word "mail"');
  });

  it('judges the verified name when there is one, else the first PTR name', async () => {
    const mail = 'mail.example-company.de';
    // Two PTRs: the dynamic one first, the forward-confirmed one a mail name: the verified name decides.
    const both = session('73.12.34.56', { names: [comcast, mail], verified: mail });
    expect((await c.evaluate(both)).action).toBe('next');
    // None forward-confirms: the first name is still the address holder's word about it.
    const unverified = session('73.12.34.56', { names: [comcast, mail], verified: null });
    expect((await c.evaluate(unverified)).action).toBe('defer');
    const unchecked = session('73.12.34.56', { names: [comcast] });
    expect((await c.evaluate(unchecked)).action).toBe('defer');
  });

  it('has no opinion without a lookup, without names, or on a temporary failure', async () => {
    const notLooked = await c.evaluate(session('73.12.34.56', undefined));
    expect(notLooked.action).toBe('next');
    expect(notLooked.trace[0]?.reason).toBe('reverse DNS not looked up');
    const temp = await c.evaluate(session('73.12.34.56', { names: [], error: 'temporary' }));
    expect(temp.action).toBe('next');
    expect(temp.trace[0]?.reason).toBe('temporary DNS failure');
    const none = await c.evaluate(session('73.12.34.56', { names: [] }));
    expect(none.action).toBe('next');
    expect(none.trace[0]?.reason).toBe('no PTR name');
  });

  it('does not act on a hostile name, and never builds a multi-line reply', async () => {
    const evil = 'c-73-12-34-56.dyn.example.net\r\n250 OK';
    const d = await c.evaluate(session('73.12.34.56', { names: [evil] }));
    expect(d.action).toBe('next');
    expect(d.trace[0]?.reason).toBe('reverse DNS unusable: name is not a host name');
  });

  it('runs at connect when delay-reject is off', async () => {
    const d = await chain([rdnsDynamic()], { clock, delayReject: false }).evaluate({
      ...dynamicClient,
      stage: 'connect',
    });
    expect(d.action).toBe('defer');
  });
});

describe('rdns-missing in a chain', () => {
  const c = chain([rdnsMissing()], { clock });

  it("defers a client without PTR with Postfix's text, 450 4.7.1", async () => {
    const d = await c.evaluate(session('192.0.2.7', { names: [] }));
    expect(d.action).toBe('defer');
    expect(d.reply).toEqual({
      code: 450,
      enhanced: '4.7.1',
      text: 'Client host rejected: cannot find your reverse hostname, [192.0.2.7] (rdns-missing)',
    });
    expect(d.reason).toBe('no PTR name for 192.0.2.7');
  });

  it('rejects with 550 5.7.1 when configured to', async () => {
    const d = await chain([rdnsMissing({ action: 'reject' })], { clock }).evaluate(
      session('2001:db8::7', { names: [] }),
    );
    expect(d.action).toBe('reject');
    expect(d.reply?.code).toBe(550);
    expect(d.reply?.text).toContain('[2001:db8::7]');
  });

  it('never hits on a temporary failure, even when configured to reject', async () => {
    const d = await chain([rdnsMissing({ action: 'reject' })], { clock }).evaluate(
      session('192.0.2.7', { names: [], error: 'temporary' }),
    );
    expect(d.action).toBe('next');
    expect(d.trace[0]?.reason).toBe('temporary DNS failure');
  });

  it('has no opinion when rDNS was not looked up or a name exists', async () => {
    const a = await c.evaluate(session('192.0.2.7', undefined));
    expect(a.action).toBe('next');
    expect(a.trace[0]?.reason).toBe('reverse DNS not looked up');
    const b = await c.evaluate(session('73.12.34.56', { names: [comcast], verified: null }));
    expect(b.action).toBe('next');
  });

  it('keeps a garbage client address out of the reply text', async () => {
    const d = await c.evaluate(session('1.2.3.4\r\n250 OK', { names: [] }));
    expect(d.action).toBe('defer');
    expect(d.reply && isValidReply(d.reply)).toBe(true);
    expect(d.reply?.text).toContain('[unknown]');
  });
});

describe('rdnsFactories', () => {
  it('builds both checks by name, with their options', async () => {
    const s = site();
    const dyn = rdnsFactories['rdns-dynamic']?.({ action: 'reject' }, s, undefined);
    const missing = rdnsFactories['rdns-missing']?.({}, s, undefined);
    expect(dyn?.name).toBe('rdns-dynamic');
    expect(dyn?.stage).toBe('connect');
    expect(missing?.name).toBe('rdns-missing');
    if (!dyn || !missing) throw new Error('factories missing');
    const d = await chain([missing, dyn], { clock }).evaluate(dynamicClient);
    expect(d.action).toBe('reject');
    expect(d.check).toBe('rdns-dynamic');
  });

  it('refuses a bad action or score at construction', () => {
    const s = site();
    expect(() => rdnsFactories['rdns-dynamic']?.({ action: 'drop' }, s, undefined)).toThrow(TypeError);
    expect(() => rdnsFactories['rdns-missing']?.({ score: 'high' }, s, undefined)).toThrow(TypeError);
    // A misspelt option is a config error, as for every other check, not silently the default.
    expect(() => rdnsFactories['rdns-dynamic']?.({ actoin: 'reject' }, s, undefined)).toThrow(
      /rdns-dynamic: unknown option "actoin"/,
    );
  });
});
