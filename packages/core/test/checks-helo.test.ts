/**
 * HELO checks. Each assertion names the Postfix behaviour it mirrors (smtpd_check.c,
 * valid_hostname.c, postconf(5)).
 */
import type { Check, CheckContext, Session, Verdict } from '@mxguard/core';
import {
  coreFactories,
  heloBareIp,
  heloClaimsUs,
  heloFqdn,
  heloLiteralMismatch,
  heloRequired,
  heloSyntax,
  isValidHostname,
  isValidReply,
  ManualClock,
  parseHeloLiteral,
  silentLogger,
  site,
} from '@mxguard/core';
import { describe, expect, it } from 'vitest';

const testSite = site({
  ourDomains: ['example.com'],
  ourHosts: ['mx.example.com'],
  ourAddresses: ['192.0.2.10', '2001:db8:ffff::10'],
  ourNetworks: ['10.0.0.0/8', '2001:db8::/32'],
});
const ctx: CheckContext = { clock: new ManualClock(0), log: silentLogger, findings: [] };
function run(check: Check, over: Partial<Session> = {}): Verdict {
  const v = check.run({ clientAddress: '198.51.100.7', stage: 'rcpt', ...over }, ctx);
  if (v instanceof Promise) throw new Error('pure checks return plain verdicts');
  if (v.action !== 'next') expect(isValidReply(v.reply)).toBe(true);
  return v;
}
const codeOf = (v: Verdict) => (v.action === 'next' ? undefined : `${v.reply.code} ${v.reply.enhanced}`);

describe('isValidHostname (Postfix valid_hostname())', () => {
  it.each([
    'mx.example.com',
    'a',
    'localhost',
    'my_host.example.com', // '_' tolerated by Postfix ("grr..")
    'xn--bcher-kva.example',
    'bücher.example', // U-label: Postfix with smtputf8_enable converts to A-label first
    `${'a'.repeat(63)}.example.com`,
    '1a.example', // numeric labels are fine as long as the name is not all-numeric
  ])('accepts %s', (n) => expect(isValidHostname(n)).toBe(true));

  it.each([
    '',
    '12345', // all-numeric: "numeric hostname"
    '1.2.3.4', // all-numeric
    '-a.example', // misplaced hyphen
    'a-.example',
    'a..example', // misplaced delimiter
    '.example',
    'example.', // trailing dot is stripped by callers, not here
    `${'a'.repeat(64)}.example.com`, // label too long
    `${'a.'.repeat(127)}ab`, // 256 octets
    'a b.example',
    'a\u0000b.example',
    'a\r\nb',
    'ex@mple.com',
  ])('refuses %j', (n) => expect(isValidHostname(n)).toBe(false));

  it('refuses U-labels when utf8 is off', () => {
    expect(isValidHostname('bücher.example', { utf8: false })).toBe(false);
  });
});

describe('parseHeloLiteral (RFC 5321 4.1.3, Postfix valid_mailhost_addr())', () => {
  it('reads IPv4 and tagged IPv6 literals, normalised', () => {
    expect(parseHeloLiteral('[192.0.2.1]')).toEqual({ valid: true, address: '192.0.2.1', family: 4 });
    expect(parseHeloLiteral('[IPv6:::1]')).toEqual({ valid: true, address: '::1', family: 6 });
    expect(parseHeloLiteral('[ipv6:2001:DB8:0:0::1]')).toEqual({
      valid: true,
      address: '2001:db8::1',
      family: 6,
    });
    expect(parseHeloLiteral('[IPv6:::ffff:192.0.2.1]')).toEqual({
      valid: true,
      address: '192.0.2.1',
      family: 4,
    });
  });
  it('refuses what Postfix calls "invalid ip address"', () => {
    for (const s of [
      '[300.1.1.1]',
      '[::1]',
      '[IPv6:1.2.3.4]',
      '[]',
      '[1.2.3]',
      '[0.1.2.3]',
      '[x:abc]',
      '[IPv6:fe80::1%eth0]',
    ]) {
      expect(parseHeloLiteral(s)?.valid, s).toBe(false);
    }
  });
  it('says why an untagged IPv6 literal is refused (not "invalid IPv4 literal")', () => {
    expect(parseHeloLiteral('[::1]')).toEqual({
      valid: false,
      reason: 'IPv6 literal without the "IPv6:" tag',
    });
    expect(parseHeloLiteral('[2001:db8::1]')).toMatchObject({
      reason: 'IPv6 literal without the "IPv6:" tag',
    });
    expect(parseHeloLiteral('[1.2.3]')).toMatchObject({ reason: 'invalid IPv4 literal' });
    const v = run(heloSyntax(), { helo: '[::1]' });
    expect(v.reason).toBe('HELO IPv6 literal without the "IPv6:" tag');
  });
  it('returns null for anything unbracketed', () => {
    expect(parseHeloLiteral('192.0.2.1')).toBeNull();
    expect(parseHeloLiteral('mx.example.com')).toBeNull();
    expect(parseHeloLiteral('')).toBeNull();
  });
});

describe('helo-required (smtpd_helo_required = yes)', () => {
  const c = heloRequired();
  it('503 5.5.1 "Error: send HELO/EHLO first" without HELO', () => {
    const v = run(c, { helo: undefined });
    expect(v.action).toBe('reject');
    expect(v.action !== 'next' && v.reply.text).toBe('Error: send HELO/EHLO first');
    expect(codeOf(v)).toBe('503 5.5.1');
    expect(run(c, { helo: '' }).action).toBe('reject');
    expect(run(c, { helo: '   ' }).action).toBe('reject');
  });
  it('passes any HELO, even a bad one (other checks judge it)', () => {
    expect(run(c, { helo: 'x' }).action).toBe('next');
  });
  it('is judged at MAIL', () => expect(c.stage).toBe('mail'));
});

describe('helo-syntax (reject_invalid_helo_hostname)', () => {
  const c = heloSyntax();
  it.each([
    'mx.example.com',
    'mx.example.com.',
    'localhost',
    'my_pc',
    '[192.0.2.1]',
    '[IPv6:2001:db8::1]',
    'bücher.example',
  ])('passes %j', (helo) => expect(run(c, { helo }).action).toBe('next'));
  it('passes a bare IP, as Postfix does ("XXX back compat": valid_hostaddr)', () => {
    expect(run(c, { helo: '192.0.2.1' }).action).toBe('next');
    expect(run(c, { helo: '2001:db8::1' }).action).toBe('next');
    expect(run(c, { helo: '0.0.0.0' }).action).toBe('next');
    expect(run(c, { helo: '01.2.3.4' }).action).toBe('next');
  });
  it('refuses a bare dotted quad with a first octet of 0, as valid_ipv4_hostaddr() (Postfix 3.7, measured)', () => {
    for (const helo of ['0.255.255.255', '0.1.2.3', '00.1.2.3', '0.1.2.3.', '::ffff:0.1.2.3']) {
      const v = run(c, { helo });
      expect(codeOf(v), helo).toBe('501 5.5.2');
      expect(v.action !== 'next' && v.reply.text).toBe(`<${helo}>: Helo command rejected: Invalid name`);
    }
    expect(run(c, { helo: '::ffff:192.0.2.1' }).action).toBe('next');
  });
  it('refuses U-labels with utf8: false, as Postfix 3.7 does (501 Invalid name, measured)', () => {
    const v = run(heloSyntax({ utf8: false }), { helo: 'bücher.example' });
    expect(codeOf(v)).toBe('501 5.5.2');
    expect(run(heloFqdn({ action: 'reject', utf8: false }), { helo: 'bücher.example' }).action).not.toBe(
      'next',
    );
  });
  it.each([
    '12345',
    '1.2.3',
    'a..b',
    '-bad.example',
    'bad-.example',
    'a b',
    'x\u0007y',
    `${'a'.repeat(64)}.com`,
    'example..',
  ])('rejects %j with 501 5.5.2 Invalid name', (helo) => {
    const v = run(c, { helo });
    expect(codeOf(v)).toBe('501 5.5.2');
    expect(v.action !== 'next' && v.reply.text).toMatch(/: Helo command rejected: Invalid name$/);
  });
  it.each(['[300.1.1.1]', '[::1]', '[IPv6:1.2.3.4]', '[]', '[IPv6:::1:2:3:4:5:6:7:8:9]'])(
    'rejects the literal %j with "invalid ip address" (reject_invalid_hostaddr)',
    (helo) => {
      const v = run(c, { helo });
      expect(codeOf(v)).toBe('501 5.5.2');
      expect(v.action !== 'next' && v.reply.text).toBe(
        `<${helo}>: Helo command rejected: invalid ip address`,
      );
    },
  );
  it('leaves a missing HELO to helo-required', () => {
    expect(run(c, { helo: undefined }).action).toBe('next');
  });
  it('keeps hostile input on one bounded line', () => {
    const v = run(c, { helo: `evil\r\n250 ok${'x'.repeat(100_000)}` });
    expect(v.action).toBe('reject');
    expect(v.action !== 'next' && v.reply.text.length).toBeLessThan(200);
  });
  it('honours action: score', () => {
    const v = run(heloSyntax({ action: 'score', score: 3 }), { helo: 'a..b' });
    expect(v).toMatchObject({
      action: 'next',
      findings: [{ check: 'helo-syntax', tag: 'invalid-name', score: 3 }],
    });
  });
  it('honours action: defer with the 4xx form', () => {
    expect(codeOf(run(heloSyntax({ action: 'defer' }), { helo: 'a..b' }))).toBe('450 4.5.2');
  });
  it('refuses bad options loudly', () => {
    expect(() => heloSyntax({ action: 'drop' as never })).toThrow(TypeError);
    expect(() => coreFactories['helo-syntax']?.({ utf8: 'yes' }, testSite, undefined)).toThrow(TypeError);
    expect(() => coreFactories['helo-syntax']?.({ acton: 'reject' }, testSite, undefined)).toThrow(
      /unknown option/,
    );
  });
});

describe('helo-fqdn (reject_non_fqdn_helo_hostname)', () => {
  const c = heloFqdn({ action: 'reject' });
  it('by default only doubts (selective greylist): HELO tater or nas1 proves no abuse', () => {
    for (const helo of ['tater', 'nas1', 'DiskStation', 'localhost.']) {
      expect(run(heloFqdn(), { helo }), helo).toEqual({
        action: 'next',
        reason: 'HELO has no dot',
        findings: [{ check: 'helo-fqdn', tag: 'no-dot', doubt: true, score: 1 }],
      });
    }
  });
  it.each(['mx.example.com', 'mx.example.com.', '[192.0.2.1]', '[IPv6:::1]', 'bücher.example'])(
    'passes %j',
    (helo) => expect(run(c, { helo }).action).toBe('next'),
  );
  it.each(['localhost', 'localhost.', 'DiskStation', '12345', '1.2.3', 'a..b'])(
    'rejects %j with 504 5.5.2 need fully-qualified hostname',
    (helo) => {
      const v = run(c, { helo });
      expect(codeOf(v)).toBe('504 5.5.2');
      expect(v.action !== 'next' && v.reply.text).toBe(
        `<${helo}>: Helo command rejected: need fully-qualified hostname`,
      );
    },
  );
  it('leaves a bare IP to helo-bare-ip by default, rejects it with bareIp: fail (Postfix alone)', () => {
    expect(run(c, { helo: '192.0.2.1' }).action).toBe('next');
    expect(codeOf(run(heloFqdn({ action: 'reject', bareIp: 'fail' }), { helo: '192.0.2.1' }))).toBe(
      '504 5.5.2',
    );
  });
  it('rejects an invalid literal as Postfix does here (reject_invalid_hostaddr)', () => {
    expect(codeOf(run(c, { helo: '[300.1.1.1]' }))).toBe('501 5.5.2');
  });
  it('validates bareIp', () => expect(() => heloFqdn({ bareIp: 'maybe' as never })).toThrow(TypeError));
});

describe('helo-claims-us', () => {
  const c = heloClaimsUs({}, testSite);
  it.each([
    'mx.example.com',
    'MX.EXAMPLE.COM.',
    'example.com',
    'localhost',
    'localhost.localdomain',
    '[192.0.2.10]',
    '192.0.2.10',
    '[IPv6:2001:db8:ffff::10]',
    '[127.0.0.1]',
    '[IPv6:::1]',
  ])('rejects %j from a stranger with 550 5.7.1 You are not me', (helo) => {
    const v = run(c, { helo });
    expect(v.action).toBe('reject');
    expect(codeOf(v)).toBe('550 5.7.1');
    expect(v.action !== 'next' && v.reply.text).toMatch(/: Helo command rejected: You are not me$/);
  });
  it.each(['mail.example.com', 'other.example.org', '[192.0.2.11]', 'sub.mx.example.com'])(
    'passes %j',
    (helo) => expect(run(c, { helo }).action).toBe('next'),
  );
  it('lets our networks, authenticated clients and our own addresses say our name', () => {
    expect(run(c, { helo: 'mx.example.com', clientAddress: '10.1.2.3' }).action).toBe('next');
    expect(run(c, { helo: 'mx.example.com', clientAddress: '::ffff:10.1.2.3' }).action).toBe('next');
    expect(run(c, { helo: 'mx.example.com', authUser: 'alice' }).action).toBe('next');
    expect(run(c, { helo: 'localhost', clientAddress: '192.0.2.10' }).action).toBe('next');
  });
});

describe('helo-literal-mismatch (RFC 5321 4.1.4: a mismatch is no reason to refuse)', () => {
  const c = heloLiteralMismatch({}, testSite);
  it('is a doubt with score 2 by default, never a rejection', () => {
    const v = run(c, { helo: '[192.168.1.20]' });
    expect(v).toMatchObject({
      action: 'next',
      findings: [{ check: 'helo-literal-mismatch', doubt: true, score: 2 }],
    });
  });
  it('passes a literal that is the client address, in any form', () => {
    expect(run(c, { helo: '[198.51.100.7]' }).action).toBe('next');
    expect(run(c, { helo: '[198.51.100.7]', clientAddress: '::ffff:198.51.100.7' }).findings).toBeUndefined();
    expect(run(c, { helo: '[IPv6:2001:DB8::7]', clientAddress: '2001:db8:0::7' }).findings).toBeUndefined();
  });
  it('ignores names, bare IPs and invalid literals (other checks)', () => {
    for (const helo of ['mx.example.org', '1.2.3.4', '[300.1.1.1]'])
      expect(run(c, { helo }).findings).toBeUndefined();
  });
  it('can be configured to reject', () => {
    expect(codeOf(run(heloLiteralMismatch({ action: 'reject' }, testSite), { helo: '[IPv6:::1]' }))).toBe(
      '550 5.7.1',
    );
  });
});

describe('helo-bare-ip (RFC 5321 4.1.1.1; Postfix reject_non_fqdn_helo_hostname)', () => {
  const c = heloBareIp({ action: 'reject' });
  it('by default only doubts: an appliance saying its LAN address is delayed, not refused', () => {
    expect(run(heloBareIp(), { helo: '192.168.1.20' })).toMatchObject({
      action: 'next',
      findings: [{ check: 'helo-bare-ip', tag: 'bare-ip', doubt: true }],
    });
  });
  it.each(['192.0.2.1', '2001:db8::1', '::ffff:192.0.2.1', '192.0.2.1.'])(
    'rejects %j with 504 5.5.2',
    (helo) => {
      expect(codeOf(run(c, { helo }))).toBe('504 5.5.2');
    },
  );
  it.each(['[192.0.2.1]', 'mx.example.com', '1.2.3', '999.1.1.1', ''])('passes %j', (helo) =>
    expect(run(c, { helo }).action).toBe('next'),
  );
  it('can be softened to a greylist doubt', () => {
    expect(run(heloBareIp({ action: 'greylist' }), { helo: '192.0.2.1' })).toMatchObject({
      action: 'next',
      findings: [{ doubt: true }],
    });
  });
});
