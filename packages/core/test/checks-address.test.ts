/**
 * Address checks: RFC 5321 4.1.2 / 4.5.3.1 syntax and limits (RFC 6531 for UTF-8), Postfix's
 * reject_non_fqdn_sender / reject_non_fqdn_recipient (smtpd_check.c reject_non_fqdn_address) and
 * smtpd's "Bad sender/recipient address syntax" replies.
 */
import type { Check, CheckContext, Session, Verdict } from '@mxguard/core';
import {
  DEFAULT_MAX_LOCAL_PART_OCTETS,
  hasFqdnDomain,
  isValidReply,
  MAX_ADDRESS_OCTETS,
  MAX_LOCAL_PART_OCTETS,
  ManualClock,
  parseAddress,
  recipientFqdn,
  recipientSyntax,
  senderForgedOurs,
  senderFqdn,
  senderSyntax,
  silentLogger,
  site,
} from '@mxguard/core';
import { describe, expect, it } from 'vitest';

const testSite = site({
  ourDomains: ['example.com'],
  ourAddresses: ['192.0.2.10'],
  ourNetworks: ['10.0.0.0/8'],
  trustedForwarders: ['203.0.113.0/24', 'fwd.example.org'],
});
const ctx: CheckContext = { clock: new ManualClock(0), log: silentLogger, findings: [] };
function run(check: Check, over: Partial<Session> = {}): Verdict {
  const v = check.run({ clientAddress: '198.51.100.7', stage: 'rcpt', ...over }, ctx);
  if (v instanceof Promise) throw new Error('pure checks return plain verdicts');
  if (v.action !== 'next') expect(isValidReply(v.reply)).toBe(true);
  return v;
}
const codeOf = (v: Verdict) => (v.action === 'next' ? undefined : `${v.reply.code} ${v.reply.enhanced}`);

describe('parseAddress (RFC 5321 4.1.2, RFC 6531)', () => {
  it.each([
    ['user@example.com', 'user', 'example.com'],
    ['User.Name+tag@Example.COM', 'User.Name+tag', 'example.com'],
    ["o'hara!#$%&*/=?^_`{|}~-@example.com", "o'hara!#$%&*/=?^_`{|}~-", 'example.com'],
    ['"john doe"@example.com', '"john doe"', 'example.com'],
    ['"a\\"b"@example.com', '"a\\"b"', 'example.com'],
    ['""@example.com', '""', 'example.com'], // Quoted-string may be empty
    ['user@example.com.', 'user', 'example.com'], // root dot tolerated, as Postfix
    ['user@[192.0.2.1]', 'user', '[192.0.2.1]'],
    ['user@[IPv6:2001:db8::1]', 'user', '[IPv6:2001:db8::1]'],
    ['用户@例子.广告', '用户', '例子.广告'], // SMTPUTF8
    ['josé@bücher.example', 'josé', 'bücher.example'],
    ['user@localhost', 'user', 'localhost'], // syntax is fine; sender-fqdn judges it
  ])('parses %j', (s, local, domain) => {
    expect(parseAddress(s)).toMatchObject({ ok: true, local, domain });
  });
  it('accepts and reports a source route (RFC 5321 4.1.2: accept, ignore)', () => {
    expect(parseAddress('@relay.example,@[192.0.2.1]:user@example.com')).toMatchObject({
      ok: true,
      local: 'user',
      route: '@relay.example,@[192.0.2.1]',
    });
  });
  it.each([
    '',
    'user',
    'postmaster', // a bare postmaster is handled by the checks, not the parser
    '@example.com',
    'user@',
    'a..b@example.com',
    '.a@example.com',
    'a.@example.com',
    'a b@example.com',
    'a@b@example.com',
    '"unterminated@example.com',
    '"a"b@example.com',
    '"a\u0001"@example.com',
    'a\u0000@example.com',
    'user@exa mple.com',
    'user@-example.com',
    'user@example..com',
    'user@123',
    'user@[300.1.1.1]',
    'user@[::1]',
    'user@[]',
    'user\r\n@example.com',
    'a\ud800@example.com', // lone surrogate: not UTF-8
    'a\u0085b@example.com', // C1 control
    '<user@example.com>',
    '@relay:',
    `${'a'.repeat(253)}@x`, // address > 254 octets: the path limit bounds a long local part
    `u@${'a'.repeat(63)}.${'b'.repeat(63)}.${'c'.repeat(63)}.${'d'.repeat(60)}.com`, // address > 254 octets
    'x'.repeat(1_000_000),
  ])('refuses %j', (s) => {
    const p = parseAddress(s);
    expect(p.ok).toBe(false);
    if (!p.ok) expect(p.reason.length).toBeGreaterThan(0);
  });
  it('takes a larger local-part limit when asked', () => {
    expect(parseAddress(`${'a'.repeat(80)}@example.com`, { maxLocalPart: 128 }).ok).toBe(true);
  });
  it('counts octets, not characters: 64 ASCII octets pass, 32 two-octet characters pass, 33 do not', () => {
    const strict = { maxLocalPart: MAX_LOCAL_PART_OCTETS };
    expect(parseAddress(`${'a'.repeat(64)}@example.com`, strict).ok).toBe(true);
    expect(parseAddress(`${'é'.repeat(32)}@example.com`, strict).ok).toBe(true);
    expect(parseAddress(`${'é'.repeat(33)}@example.com`, strict).ok).toBe(false);
    expect(parseAddress(`${'a'.repeat(65)}@example.com`, strict).ok).toBe(false);
  });
  it('by default bounds a local part only by the RFC 5321 4.5.3.1.3 path limit (254 octets), as Postfix', () => {
    // RFC 5321 4.5.3.1: 64 is the least a server must accept; Postfix enforces no local-part limit.
    expect(DEFAULT_MAX_LOCAL_PART_OCTETS).toBe(MAX_ADDRESS_OCTETS);
    const longest = `${'a'.repeat(MAX_ADDRESS_OCTETS - 4)}@x.y`;
    expect(longest.length).toBe(254);
    expect(parseAddress(longest).ok).toBe(true);
    expect(parseAddress(`a${longest}`)).toMatchObject({
      ok: false,
      reason: 'address longer than 254 octets',
    });
    // The same bound in UTF-8 octets: 125 two-octet characters are 250 octets, 126 are 252 + 4.
    expect(parseAddress(`${'é'.repeat(125)}@x.y`).ok).toBe(true);
    expect(parseAddress(`${'é'.repeat(126)}@x.y`).ok).toBe(false);
  });
});

describe('sender-syntax (smtpd: 501 5.1.7 Bad sender address syntax)', () => {
  const c = senderSyntax();
  it('passes good senders and the null sender', () => {
    for (const mailFrom of ['a@example.org', '', '"x y"@example.org', 'ü@bücher.example']) {
      expect(run(c, { mailFrom }).action, mailFrom).toBe('next');
    }
    expect(run(c, { mailFrom: undefined }).action).toBe('next');
  });
  it('rejects bad ones with 501 5.1.7', () => {
    for (const mailFrom of ['a..b@example.org', 'no-domain', 'a@[1.2.3]', `${'a'.repeat(255)}@example.org`]) {
      const v = run(c, { mailFrom });
      expect(codeOf(v), mailFrom).toBe('501 5.1.7');
      expect(v.action !== 'next' && v.reply.text).toBe('Bad sender address syntax');
    }
  });
  it('accepts VERP, SRS and BATV return paths with local parts over 64 octets (RFC 5321 4.5.3.1)', () => {
    const verp = `list-return-67-${'u'.repeat(40)}=example.org@lists.example.com`;
    const srs = `SRS1=HHH=forwarder.example==HHH=TT=original-sender.example=${'n'.repeat(30)}@fwd.example`;
    const batv = `prvs=1234567890=${'l'.repeat(60)}@batv.example`;
    for (const mailFrom of [verp, srs, batv]) {
      expect(mailFrom.slice(0, mailFrom.lastIndexOf('@')).length, mailFrom).toBeGreaterThan(64);
      expect(run(c, { mailFrom }).action, mailFrom).toBe('next');
      expect(run(recipientSyntax(), { rcptTo: mailFrom }).action, mailFrom).toBe('next');
    }
    expect(verp.indexOf('@')).toBe(67);
    // The strict RFC minimum stays one option away.
    expect(codeOf(run(senderSyntax({ maxLocalPart: 64 }), { mailFrom: verp }))).toBe('501 5.1.7');
  });
  it('checks maxLocalPart', () => {
    expect(
      run(senderSyntax({ maxLocalPart: 200 }), { mailFrom: `${'a'.repeat(100)}@x.example` }).action,
    ).toBe('next');
    expect(() => senderSyntax({ maxLocalPart: 0 })).toThrow(TypeError);
    expect(() => senderSyntax({ maxLocalPart: '64' as never })).toThrow(TypeError);
  });
});

describe('recipient-syntax (smtpd: 501 5.1.3 Bad recipient address syntax)', () => {
  const c = recipientSyntax();
  it('passes good recipients and a bare postmaster (RFC 5321 4.1.1.3)', () => {
    for (const rcptTo of ['a@example.com', 'postmaster', 'PostMaster', 'postmaster@example.com']) {
      expect(run(c, { rcptTo }).action, rcptTo).toBe('next');
    }
  });
  it('rejects an empty or bad recipient with 501 5.1.3', () => {
    for (const rcptTo of ['', 'user', 'a@b@c.example', 'a@[IPv6:zz]']) {
      expect(codeOf(run(c, { rcptTo })), rcptTo).toBe('501 5.1.3');
    }
  });
  it('has no opinion before RCPT', () => expect(run(c, { rcptTo: undefined }).action).toBe('next'));
});

describe('sender-fqdn (reject_non_fqdn_sender: 504 5.5.2)', () => {
  const c = senderFqdn();
  it.each(['a@example.org', 'a@example.org.', 'a@[192.0.2.1]', '', 'a@bücher.example'])(
    'passes %j',
    (mailFrom) => expect(run(c, { mailFrom }).action).toBe('next'),
  );
  it.each(['a@localhost', 'a@localhost.', 'a', 'a@', 'a@12345', 'a@exa_mple', 'a@-x.example'])(
    'rejects %j',
    (mailFrom) => {
      const v = run(c, { mailFrom });
      expect(codeOf(v)).toBe('504 5.5.2');
      expect(v.action !== 'next' && v.reply.text).toBe(
        `<${mailFrom}>: Sender address rejected: need fully-qualified address`,
      );
    },
  );
  it('sanitises a hostile address in the reply', () => {
    const v = run(c, { mailFrom: `a\r\n250 OK${'x'.repeat(10_000)}` });
    expect(v.action !== 'next' && v.reply.text.length).toBeLessThan(400);
  });
});

describe('recipient-fqdn (reject_non_fqdn_recipient: 504 5.5.2)', () => {
  const c = recipientFqdn();
  it('passes qualified recipients and a bare postmaster', () => {
    expect(run(c, { rcptTo: 'a@example.com' }).action).toBe('next');
    expect(run(c, { rcptTo: 'postmaster' }).action).toBe('next');
  });
  it('rejects unqualified ones', () => {
    const v = run(c, { rcptTo: 'bob@mailhost' });
    expect(codeOf(v)).toBe('504 5.5.2');
    expect(v.action !== 'next' && v.reply.text).toBe(
      '<bob@mailhost>: Recipient address rejected: need fully-qualified address',
    );
    expect(run(c, { rcptTo: 'bob' }).action).toBe('reject');
  });
});

describe('hasFqdnDomain', () => {
  it('reads the domain after the last @, as strrchr() does', () => {
    expect(hasFqdnDomain('"a@b"@example.com')).toBe(true);
    expect(hasFqdnDomain('a@example.com@localhost')).toBe(false);
  });
});

describe('sender-forged-ours (Postfix reject_unauthenticated_sender_login_mismatch text)', () => {
  const c = senderForgedOurs({}, testSite);
  it('rejects our domain (and subdomains) from a stranger with 553 5.7.1 not logged in', () => {
    for (const mailFrom of ['alice@example.com', 'alice@EXAMPLE.com.', 'bob@sub.example.com']) {
      const v = run(c, { mailFrom });
      expect(codeOf(v), mailFrom).toBe('553 5.7.1');
      expect(v.action !== 'next' && v.reply.text).toBe(
        `<${mailFrom}>: Sender address rejected: not logged in`,
      );
    }
  });
  it('passes other domains, look-alikes and the null sender', () => {
    for (const mailFrom of [
      'a@example.org',
      'a@notexample.com',
      'a@example.com.evil.org',
      '',
      'example.com',
    ]) {
      expect(run(c, { mailFrom }).action, mailFrom).toBe('next');
    }
  });
  it('lets our networks, authenticated users, our addresses and trusted forwarders send as us', () => {
    const mailFrom = 'alice@example.com';
    expect(run(c, { mailFrom, clientAddress: '10.9.9.9' }).action).toBe('next');
    expect(run(c, { mailFrom, authUser: 'alice' }).action).toBe('next');
    expect(run(c, { mailFrom, clientAddress: '192.0.2.10' }).action).toBe('next');
    expect(run(c, { mailFrom, clientAddress: '203.0.113.9' }).action).toBe('next');
    expect(
      run(c, { mailFrom, rdns: { names: ['fwd.example.org'], verified: 'fwd.example.org' } }).action,
    ).toBe('next');
  });
  it('never trusts a forwarder name that is only claimed (PTR not confirmed)', () => {
    const mailFrom = 'alice@example.com';
    expect(run(c, { mailFrom, rdns: { names: ['fwd.example.org'], verified: null } }).action).toBe('reject');
    expect(run(c, { mailFrom, helo: 'fwd.example.org' }).action).toBe('reject');
  });
});
