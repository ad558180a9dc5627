/**
 * Relay control (permit_mynetworks, permit_sasl_authenticated, reject_unauth_destination), trusted
 * forwarders, inNetworks, and a few end-to-end chains of the pure checks.
 */
import type { Check, CheckContext, Session, Verdict } from '@mxguard/core';
import {
  chain,
  compileNetworks,
  coreFactories,
  heloClaimsUs,
  heloSyntax,
  inNetworks,
  isValidReply,
  ManualClock,
  recipientFqdn,
  relayCheck,
  senderForgedOurs,
  senderFqdn,
  silentLogger,
  site,
  trustedCheck,
} from '@mxguard/core';
import { describe, expect, it } from 'vitest';

const testSite = site({
  ourDomains: ['example.com', 'example.net'],
  ourHosts: ['mx.example.com'],
  ourAddresses: ['192.0.2.10'],
  ourNetworks: ['10.0.0.0/8', '2001:db8::/32', '192.0.2.99'],
  trustedForwarders: ['203.0.113.0/24', '2001:db8:1::5', 'fwd.example.org', '.lists.example.info'],
});
const ctx: CheckContext = { clock: new ManualClock(0), log: silentLogger, findings: [] };
function run(check: Check, over: Partial<Session> = {}): Verdict {
  const v = check.run({ clientAddress: '198.51.100.7', stage: 'rcpt', ...over }, ctx);
  if (v instanceof Promise) throw new Error('pure checks return plain verdicts');
  if (v.action !== 'next') expect(isValidReply(v.reply)).toBe(true);
  return v;
}

describe('inNetworks', () => {
  it('matches IPv4 and IPv6 addresses and CIDRs', () => {
    expect(inNetworks('10.1.2.3', ['10.0.0.0/8'])).toBe(true);
    expect(inNetworks('11.1.2.3', ['10.0.0.0/8'])).toBe(false);
    expect(inNetworks('2001:db8::1', ['2001:db8::/32'])).toBe(true);
    expect(inNetworks('2001:db9::1', ['2001:db8::/32'])).toBe(false);
    expect(inNetworks('192.0.2.1', ['192.0.2.1'])).toBe(true);
  });
  it('normalises IPv4-mapped IPv6 on either side', () => {
    expect(inNetworks('::ffff:10.1.2.3', ['10.0.0.0/8'])).toBe(true);
    expect(inNetworks('10.1.2.3', ['::ffff:10.0.0.0/104'])).toBe(true);
    expect(inNetworks('10.1.2.3', ['::ffff:0:0/96'])).toBe(true);
  });
  it('puts a client that is not an address in no network', () => {
    for (const ip of [
      '',
      'localhost',
      '10.1',
      '10.0.0.256',
      'fe80::1%eth0',
      '[10.0.0.1]',
      'x'.repeat(100_000),
    ]) {
      expect(inNetworks(ip, ['0.0.0.0/0', '::/0']), ip).toBe(false);
    }
  });
  it('refuses bad entries loudly, as Postfix cidr_table refuses host bits', () => {
    expect(() => compileNetworks(['10.0.0.1/8'])).toThrow(/host bits/);
    expect(() => compileNetworks(['10.0.0.0/33'])).toThrow(TypeError);
    expect(() => compileNetworks(['example.com'])).toThrow(TypeError);
    expect(() => site({ ourNetworks: ['10/8'] }) && relayCheck({}, site({ ourNetworks: ['10/8'] }))).toThrow(
      TypeError,
    );
  });
});

describe('relay (reject_unauth_destination)', () => {
  const c = relayCheck({}, testSite);
  it('rejects a stranger relaying with 554 5.7.1 "<rcpt>: Relay access denied"', () => {
    const v = run(c, { rcptTo: 'victim@elsewhere.org' });
    expect(v).toMatchObject({
      action: 'reject',
      reply: { code: 554, enhanced: '5.7.1', text: '<victim@elsewhere.org>: Relay access denied' },
    });
  });
  it('passes mail for our domains, exactly (relay_domains without parent matching)', () => {
    expect(run(c, { rcptTo: 'a@example.com' }).action).toBe('next');
    expect(run(c, { rcptTo: 'a@EXAMPLE.NET.' }).action).toBe('next');
    expect(run(c, { rcptTo: 'a@sub.example.com' }).action).toBe('reject');
    expect(run(c, { rcptTo: 'a@example.com.evil.org' }).action).toBe('reject');
  });
  it('judges the domain after the last @ and ignores source routes (RFC 5321 4.1.2)', () => {
    expect(run(c, { rcptTo: '@example.com:victim@elsewhere.org' }).action).toBe('reject');
    expect(run(c, { rcptTo: '"a@example.com"@elsewhere.org' }).action).toBe('reject');
  });
  it('refuses routed local parts, as Postfix with allow_untrusted_routing = no', () => {
    for (const rcptTo of [
      'a%elsewhere.org@example.com',
      'elsewhere.org!a@example.com',
      '"a@elsewhere.org"@example.com',
    ]) {
      expect(run(c, { rcptTo }).action, rcptTo).toBe('reject');
      expect(run(c, { rcptTo, authUser: 'alice' }).action, rcptTo).toBe('accept');
    }
    expect(run(c, { rcptTo: '@relay.example:a@example.com' }).action).toBe('next');
  });
  it('treats a literal of our address as ours, any other literal as relaying', () => {
    expect(run(c, { rcptTo: 'a@[192.0.2.10]' }).action).toBe('next');
    expect(run(c, { rcptTo: 'a@[192.0.2.11]' }).action).toBe('reject');
  });
  it('accepts our networks (permit_mynetworks) and authenticated clients (permit_sasl_authenticated)', () => {
    expect(run(c, { rcptTo: 'x@elsewhere.org', clientAddress: '10.2.3.4' }).action).toBe('accept');
    expect(run(c, { rcptTo: 'x@elsewhere.org', clientAddress: '::ffff:10.2.3.4' }).action).toBe('accept');
    expect(run(c, { rcptTo: 'x@elsewhere.org', clientAddress: '2001:db8:5::1' }).action).toBe('accept');
    expect(run(c, { rcptTo: 'x@elsewhere.org', authUser: 'alice' }).action).toBe('accept');
    expect(run(c, { rcptTo: 'x@elsewhere.org', authUser: '' }).action).toBe('reject');
  });
  it('has no opinion without a recipient, and a bare postmaster is local', () => {
    expect(run(c, { rcptTo: undefined }).action).toBe('next');
    expect(run(c, { rcptTo: 'postmaster' }).action).toBe('next');
  });
  it('keeps a hostile recipient out of the reply framing', () => {
    const v = run(c, { rcptTo: `a\r\nDATA@evil${'x'.repeat(10_000)}.org` });
    expect(v.action).toBe('reject');
  });
  it('can be put in score mode', () => {
    expect(run(relayCheck({ action: 'score', score: 9 }, testSite), { rcptTo: 'x@y.org' })).toMatchObject({
      action: 'next',
      findings: [{ check: 'relay', score: 9 }],
    });
  });
});

describe('trusted', () => {
  const c = trustedCheck({}, testSite);
  it('accepts forwarders by address, CIDR and forward-confirmed name', () => {
    expect(run(c, { clientAddress: '203.0.113.200' }).action).toBe('accept');
    expect(run(c, { clientAddress: '2001:db8:1::5' }).action).toBe('accept');
    expect(run(c, { rdns: { names: ['fwd.example.org'], verified: 'FWD.example.org.' } })).toMatchObject({
      action: 'accept',
      reason: 'trusted forwarder',
    });
    expect(
      run(c, { rdns: { names: ['a.lists.example.info'], verified: 'a.lists.example.info' } }).action,
    ).toBe('accept');
  });
  it('never trusts a claimed name', () => {
    expect(run(c, { rdns: { names: ['fwd.example.org'] } }).action).toBe('next');
    expect(run(c, { rdns: { names: ['fwd.example.org'], verified: null } }).action).toBe('next');
    expect(run(c, { helo: 'fwd.example.org' }).action).toBe('next');
    expect(run(c, { rdns: { names: [], verified: 'lists.example.info' } }).action).toBe('next'); // .form: subdomains only
    expect(run(c, { rdns: { names: [], verified: 'evilfwd.example.org' } }).action).toBe('next');
  });
  it('refuses bad forwarder entries loudly', () => {
    expect(() => trustedCheck({}, site({ trustedForwarders: ['not a host'] }))).toThrow(TypeError);
    expect(() => coreFactories.trusted?.({ x: 1 }, testSite, undefined)).toThrow(TypeError);
  });
});

describe('end to end through chain() (delay_reject: judged at RCPT)', () => {
  const checks = [
    trustedCheck({}, testSite),
    relayCheck({}, testSite),
    heloClaimsUs({}, testSite),
    heloSyntax(),
    senderFqdn(),
    senderForgedOurs({}, testSite),
    recipientFqdn(),
  ];
  const c = chain(checks, { clock: new ManualClock(0) });

  it('a clean stranger to our domain: no opinion, every link traced', async () => {
    const d = await c.evaluate({
      clientAddress: '198.51.100.7',
      stage: 'rcpt',
      helo: 'mail.example.org',
      mailFrom: 'a@example.org',
      rcptTo: 'b@example.com',
    });
    expect(d.action).toBe('next');
    expect(d.trace.map((t) => t.check)).toEqual(checks.map((k) => k.name));
  });
  it('a stranger claiming to be us is refused by helo-claims-us, reply decorated with the check', async () => {
    const d = await c.evaluate({
      clientAddress: '198.51.100.7',
      stage: 'rcpt',
      helo: 'mx.example.com',
      mailFrom: 'a@example.org',
      rcptTo: 'b@example.com',
    });
    expect(d).toMatchObject({
      action: 'reject',
      check: 'helo-claims-us',
      reply: { code: 550, enhanced: '5.7.1' },
    });
    expect(d.reply?.text).toBe('<mx.example.com>: Helo command rejected: You are not me (helo-claims-us)');
  });
  it('relaying is refused before anything else looks at the envelope', async () => {
    const d = await c.evaluate({
      clientAddress: '198.51.100.7',
      stage: 'rcpt',
      helo: 'a..b',
      rcptTo: 'x@elsewhere.org',
    });
    expect(d).toMatchObject({ action: 'reject', check: 'relay', reply: { code: 554 } });
  });
  it('a trusted forwarder passes with our own domain as sender', async () => {
    const d = await c.evaluate({
      clientAddress: '203.0.113.5',
      stage: 'rcpt',
      helo: 'localhost',
      mailFrom: 'alice@example.com',
      rcptTo: 'b@example.com',
    });
    expect(d).toMatchObject({ action: 'accept', check: 'trusted' });
  });
  it('built from coreFactories with JSON options, the same chain decides the same', async () => {
    const names = [
      'trusted',
      'relay',
      'helo-claims-us',
      'helo-syntax',
      'sender-fqdn',
      'sender-forged-ours',
      'recipient-fqdn',
    ];
    const c2 = chain(names.map((n) => coreFactories[n]!({}, testSite, undefined)));
    const d = await c2.evaluate({
      clientAddress: '198.51.100.7',
      stage: 'rcpt',
      helo: 'h.example.org',
      mailFrom: 'x@example.com',
      rcptTo: 'b@example.com',
    });
    expect(d).toMatchObject({ action: 'reject', check: 'sender-forged-ours', reply: { code: 553 } });
  });
  it('at HELO time without delay_reject, only the HELO checks run', async () => {
    const c3 = chain(checks, { delayReject: false });
    const d = await c3.evaluate({ clientAddress: '198.51.100.7', stage: 'helo', helo: '[300.1.1.1]' });
    expect(d).toMatchObject({ action: 'reject', check: 'helo-syntax' });
    expect(d.trace.map((t) => t.check)).toEqual(['helo-claims-us', 'helo-syntax']);
  });
});
