/**
 * Access tables with Postfix access(5) semantics (check_client_access, check_helo_access,
 * check_sender_access, check_recipient_access; smtpd_check.c check_table_result()).
 */
import type { Check, CheckContext, Session, Verdict } from '@mxguard/core';
import {
  accessTable,
  chain,
  coreFactories,
  isValidReply,
  ManualClock,
  silentLogger,
  site,
} from '@mxguard/core';
import { describe, expect, it } from 'vitest';

const ctx: CheckContext = { clock: new ManualClock(0), log: silentLogger, findings: [] };
function run(check: Check, over: Partial<Session> = {}): Verdict {
  const v = check.run({ clientAddress: '198.51.100.7', stage: 'rcpt', ...over }, ctx);
  if (v instanceof Promise) throw new Error('pure checks return plain verdicts');
  if (v.action !== 'next') expect(isValidReply(v.reply)).toBe(true);
  return v;
}
const codeOf = (v: Verdict) =>
  v.action === 'next' ? v.action : `${v.action} ${v.reply.code} ${v.reply.enhanced}`;

describe('actions (access(5) ACCEPT/REJECT ACTIONS)', () => {
  const t = (value: string) => accessTable({ key: 'sender', entries: { 'spammer@example.org': value } });
  const s = { mailFrom: 'spammer@example.org' };
  it('REJECT: access_map_reject_code 554 5.7.1, "Access denied" without text', () => {
    const v = run(t('REJECT'), s);
    expect(v).toMatchObject({
      action: 'reject',
      reply: {
        code: 554,
        enhanced: '5.7.1',
        text: '<spammer@example.org>: Sender address rejected: Access denied',
      },
    });
  });
  it('REJECT text, with an optional enhanced code (dsn_split)', () => {
    expect(run(t('REJECT go away'), s)).toMatchObject({
      reply: {
        code: 554,
        enhanced: '5.7.1',
        text: '<spammer@example.org>: Sender address rejected: go away',
      },
    });
    expect(run(t('REJECT 5.7.26 spoofed'), s)).toMatchObject({
      reply: { enhanced: '5.7.26', text: '<spammer@example.org>: Sender address rejected: spoofed' },
    });
    // the class follows the reply code (smtpd_dsn_fix): a 5xx never carries 4.x.x
    expect(run(t('REJECT 4.7.1 oops'), s)).toMatchObject({ reply: { code: 554, enhanced: '5.7.1' } });
  });
  it('DEFER: access_map_defer_code 450 4.7.1', () => {
    expect(codeOf(run(t('DEFER'), s))).toBe('defer 450 4.7.1');
    expect(run(t('DEFER try later'), s)).toMatchObject({
      reply: { text: '<spammer@example.org>: Sender address rejected: try later' },
    });
  });
  it('DEFER_IF_PERMIT: a 4xx that a later reject overrides', () => {
    const v = run(t('DEFER_IF_PERMIT'), s);
    expect(v).toMatchObject({
      action: 'defer',
      ifPermit: true,
      reply: { code: 450, text: '<spammer@example.org>: Sender address rejected: Service unavailable' },
    });
  });
  it('4xx/5xx text, enhanced code defaulting to the class .7.1', () => {
    expect(codeOf(run(t('550 no thanks'), s))).toBe('reject 550 5.7.1');
    expect(codeOf(run(t('421 4.7.0 closing'), s))).toBe('defer 421 4.7.0');
    expect(codeOf(run(t('553 4.1.8 bad'), s))).toBe('reject 553 5.1.8');
  });
  it('OK, RELAY and accept accept; case does not matter', () => {
    for (const v of ['OK', 'ok', 'RELAY', 'accept', 'OK trailing text ignored'])
      expect(run(t(v), s).action, v).toBe('accept');
  });
  it('DUNNO and WARN have no opinion', () => {
    expect(run(t('DUNNO'), s).action).toBe('next');
    expect(run(t('WARN watch this'), s)).toMatchObject({
      action: 'next',
      reason: expect.stringContaining('WARN watch this'),
    });
  });
  it('refuses what it does not support, naming the entry', () => {
    expect(() => t('HOLD')).toThrow(/entry "spammer@example.org"/);
    expect(() => t('550')).toThrow(/needs a reply text/);
    expect(() => t('250 fine')).toThrow(TypeError);
    expect(() => t('permit_mynetworks')).toThrow(TypeError);
    expect(() => t('')).toThrow(TypeError);
  });
});

describe('sender/recipient lookup order (access(5) EMAIL ADDRESS PATTERNS)', () => {
  const table = accessTable({
    key: 'sender',
    entries: [
      ['user@sub.example.com', 'OK'],
      ['sub.example.com', '550 domain'],
      ['example.com', '551 parent'],
      ['.example.net', '552 subdomains only'],
      ['postmaster@', '553 any postmaster'],
      ['<>', '554 null sender'],
      ['/^bulk[0-9]+@/i', '555 regexp'],
    ],
  });
  const code = (mailFrom: string) => {
    const v = run(table, { mailFrom });
    return v.action === 'next' ? 'next' : v.action === 'accept' ? 'OK' : String(v.reply.code);
  };
  it('full address first, then the domain, then parents, then user@', () => {
    expect(code('user@sub.example.com')).toBe('OK');
    expect(code('USER@Sub.Example.COM.')).toBe('OK'); // keys fold case; root dot stripped
    expect(code('other@sub.example.com')).toBe('550');
    expect(code('other@deep.sub.example.com')).toBe('550');
    expect(code('other@example.com')).toBe('551'); // parent_domain_matches_subdomains
    expect(code('postmaster@sub.example.com')).toBe('550'); // domain before user@
    expect(code('postmaster@elsewhere.org')).toBe('553');
  });
  it('.domain matches subdomains only', () => {
    expect(code('a@x.example.net')).toBe('552');
    expect(code('a@example.net')).toBe('next');
  });
  it('<> is the null sender (smtpd_null_access_lookup_key)', () => {
    expect(code('')).toBe('554');
  });
  it('regexps come after the hash-style keys', () => {
    expect(code('BULK12@anything.org')).toBe('555');
    expect(code('bulk1@example.com')).toBe('551');
  });
  it('look-alike domains do not match', () => {
    expect(code('a@notexample.com')).toBe('next');
    expect(code('a@example.com.evil.org')).toBe('next');
  });
  it('DUNNO stops the table: parents are not tried', () => {
    const t = accessTable({
      key: 'recipient',
      entries: { 'ok.example.com': 'DUNNO', 'example.com': 'REJECT' },
    });
    expect(run(t, { rcptTo: 'a@ok.example.com' }).action).toBe('next');
    expect(run(t, { rcptTo: 'a@x.ok.example.com' }).action).toBe('next');
    expect(run(t, { rcptTo: 'a@other.example.com' }).action).toBe('reject');
  });
  it('recipient tables refuse <>', () => {
    expect(() => accessTable({ key: 'recipient', entries: { '<>': 'OK' } })).toThrow(TypeError);
  });
});

describe('client tables (check_client_access)', () => {
  const t = accessTable({
    key: 'client',
    entries: `
# comment
192.0.2.1        OK
192.0.2          REJECT whole /24 by octets
198.51           DEFER
10.0.0.0/8       550 5.7.1 cidr
2001:db8::/32    551 v6 cidr
2001:db8:1::1    OK
good.example.org OK
/\\.dyn\\./i      REJECT dynamic
  looking dynamic
`,
  });
  it('address, then truncated octets, then CIDRs', () => {
    expect(run(t, { clientAddress: '192.0.2.1' }).action).toBe('accept');
    expect(codeOf(run(t, { clientAddress: '192.0.2.77' }))).toBe('reject 554 5.7.1');
    expect(codeOf(run(t, { clientAddress: '198.51.100.7' }))).toBe('defer 450 4.7.1');
    expect(codeOf(run(t, { clientAddress: '10.9.8.7' }))).toBe('reject 550 5.7.1');
    expect(codeOf(run(t, { clientAddress: '::ffff:10.9.8.7' }))).toBe('reject 550 5.7.1');
    expect(codeOf(run(t, { clientAddress: '2001:db8:5::1' }))).toBe('reject 551 5.7.1');
    expect(run(t, { clientAddress: '2001:DB8:1:0::1' }).action).toBe('accept');
    expect(run(t, { clientAddress: '203.0.113.1' }).action).toBe('next');
  });
  it('the verified name (and parents) before the address; never the unverified PTR', () => {
    expect(
      run(t, {
        clientAddress: '10.1.1.1',
        rdns: { names: ['good.example.org'], verified: 'good.example.org' },
      }).action,
    ).toBe('accept');
    expect(
      run(t, { clientAddress: '10.1.1.1', rdns: { names: ['good.example.org'], verified: null } }).action,
    ).toBe('reject');
  });
  it('regexps see the verified name; continuation lines join the text', () => {
    const v = run(t, { clientAddress: '203.0.113.1', rdns: { names: [], verified: 'host.DYN.isp.example' } });
    expect(v).toMatchObject({
      action: 'reject',
      reply: { text: '<host.DYN.isp.example[203.0.113.1]>: Client host rejected: dynamic looking dynamic' },
    });
  });
  it('shows name[address] as Postfix does', () => {
    const v = run(t, { clientAddress: '192.0.2.9' });
    expect(v.action !== 'next' && v.reply.text).toBe(
      '<unknown[192.0.2.9]>: Client host rejected: whole /24 by octets',
    );
  });
  it('names a bad line', () => {
    expect(() => accessTable({ key: 'client', entries: 'a.example OK\n10.0.0.1/8 REJECT\n' })).toThrow(
      /line 2.*host bits/,
    );
    expect(() => accessTable({ key: 'client', entries: 'a.example OK\njustakey\n' })).toThrow(/line 2/);
    expect(() => accessTable({ key: 'client', entries: '/unclosed OK\n' })).toThrow(/line 1/);
    expect(() => accessTable({ key: 'client', entries: '/a(/ OK\n' })).toThrow(/line 1/);
    expect(() => accessTable({ key: 'client', entries: '/a/g OK\n' })).toThrow(/flags/);
    expect(() => accessTable({ key: 'client', entries: '2001:db8 OK\n' })).toThrow(/line 1/);
    expect(() => accessTable({ key: 'client', entries: 'a.example OK\nA.EXAMPLE REJECT\n' })).toThrow(
      /duplicate/,
    );
    expect(() => accessTable({ key: 'client', entries: '  OK\n' })).toThrow(/continuation/);
  });
});

describe('helo tables (check_helo_access)', () => {
  const t = accessTable({
    key: 'helo',
    entries: {
      'example.com': 'REJECT You are not us',
      friend: 'OK',
      '192.0.2.0/24': 'REJECT literal of a bad net',
      '[198.51.100.1]': 'DEFER',
    },
  });
  it('name and parents', () => {
    expect(run(t, { helo: 'mx.example.com' })).toMatchObject({
      action: 'reject',
      reply: { text: '<mx.example.com>: Helo command rejected: You are not us' },
    });
    expect(run(t, { helo: 'Friend' }).action).toBe('accept');
    expect(run(t, { helo: 'other.org' }).action).toBe('next');
  });
  it('literals and bare IPs against addresses and CIDRs', () => {
    expect(run(t, { helo: '[192.0.2.5]' }).action).toBe('reject');
    expect(run(t, { helo: '192.0.2.5' }).action).toBe('reject');
    expect(run(t, { helo: '[198.51.100.1]' }).action).toBe('defer');
    expect(run(t, { helo: '[IPv6:::ffff:192.0.2.5]' }).action).toBe('reject');
  });
  it('no HELO: no opinion', () => expect(run(t).action).toBe('next'));
});

describe('rdns tables (check_reverse_client_hostname_access)', () => {
  it('match the first PTR name, verified or not', () => {
    const t = accessTable({ key: 'rdns', entries: { '.dynamic.isp.example': 'DEFER_IF_PERMIT dynamic' } });
    expect(run(t, { rdns: { names: ['1-2-3-4.dynamic.isp.example'] } }).action).toBe('defer');
    expect(run(t, { rdns: { names: [] } }).action).toBe('next');
  });
  it('refuse OK: a PTR owner could let himself in', () => {
    expect(() => accessTable({ key: 'rdns', entries: { 'good.example': 'OK' } })).toThrow(/client table/);
  });
});

describe('factories and chain', () => {
  it('builds from JSON under stable names', () => {
    const s = site();
    const c = coreFactories['recipient-access']!({ entries: { 'abuse@': 'OK' } }, s, undefined);
    expect(c).toMatchObject({ name: 'recipient-access', stage: 'rcpt' });
    expect(coreFactories.access!({ key: 'helo', name: 'my-helo', entries: [] }, s, undefined).name).toBe(
      'my-helo',
    );
    expect(() => coreFactories['sender-access']!({ entries: {}, typo: 1 }, s, undefined)).toThrow(
      /unknown option/,
    );
    expect(() => coreFactories.access!({ key: 'body', entries: {} }, s, undefined)).toThrow(TypeError);
    expect(() => coreFactories['client-access']!({ entries: 42 }, s, undefined)).toThrow(TypeError);
  });
  it('DEFER_IF_PERMIT turns into a defer at the end of a chain, and a later reject wins', async () => {
    const soft = accessTable({ key: 'client', entries: { '198.51.100.0/24': 'DEFER_IF_PERMIT' } });
    const hard = accessTable({ key: 'recipient', entries: { 'nobody@example.com': 'REJECT' } });
    const c = chain([soft, hard]);
    const base = { clientAddress: '198.51.100.7', stage: 'rcpt' as const };
    expect(await c.evaluate({ ...base, rcptTo: 'a@example.com' })).toMatchObject({
      action: 'defer',
      check: 'client-access',
    });
    expect(await c.evaluate({ ...base, rcptTo: 'nobody@example.com' })).toMatchObject({
      action: 'reject',
      check: 'recipient-access',
    });
  });
});
