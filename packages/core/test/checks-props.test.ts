/**
 * Properties over generated input: no stranger's string makes a parser or a check throw, and every
 * verdict is well formed (isValidReply; a 5xx never carries a 4.x.x, a 4xx never a 5.x.x).
 */
import type { Check, CheckContext, Session, Verdict } from '@mxguard/core';
import {
  accessTable,
  coreFactories,
  HIT_ACTIONS,
  inNetworks,
  isValidHostname,
  isValidReply,
  ManualClock,
  parseAddress,
  parseHeloLiteral,
  silentLogger,
  site,
} from '@mxguard/core';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';

const testSite = site({
  ourDomains: ['example.com'],
  ourHosts: ['mx.example.com'],
  ourAddresses: ['192.0.2.10'],
  ourNetworks: ['10.0.0.0/8', '2001:db8::/32'],
  trustedForwarders: ['203.0.113.0/24', 'fwd.example.org'],
});
const ctx: CheckContext = { clock: new ManualClock(0), log: silentLogger, findings: [] };

/** Strings a hostile client might send: grammar fragments, controls, unicode, and plain noise. */
const piece = fc.constantFrom(
  '',
  '.',
  '..',
  '-',
  '_',
  '@',
  '"',
  '\\',
  '[',
  ']',
  ':',
  '%',
  '!',
  '/',
  ' ',
  '\r\n',
  '\u0000',
  '\u007f',
  '\u0085',
  '\ud800',
  'IPv6:',
  '::1',
  '::ffff:',
  '192.0.2.10',
  '300',
  'example.com',
  'mx',
  'localhost',
  'xn--',
  'bücher',
  '例え',
  '💌',
  'a'.repeat(70),
);
const hostile = fc.oneof(
  fc.string({ maxLength: 300 }),
  fc.string({ unit: 'grapheme', maxLength: 100 }),
  fc.array(piece, { maxLength: 12 }).map((xs) => xs.join('')),
  fc.ipV4().map((ip) => `[${ip}]`),
  fc.ipV6().map((ip) => `[IPv6:${ip}]`),
  fc.ipV6(),
  fc.emailAddress(),
  fc.domain(),
);
const maybe = fc.option(hostile, { nil: undefined });
const client = fc.oneof(
  fc.ipV4(),
  fc.ipV6(),
  fc.constantFrom('10.1.2.3', '::ffff:10.1.2.3', '203.0.113.9', '', 'junk'),
);
const sessionArb: fc.Arbitrary<Session> = fc.record({
  clientAddress: client,
  stage: fc.constant('rcpt' as const),
  helo: maybe,
  mailFrom: maybe,
  rcptTo: maybe,
  authUser: fc.option(fc.constantFrom('', 'alice'), { nil: undefined }),
  rdns: fc.option(
    fc.record({ names: fc.array(hostile, { maxLength: 2 }), verified: fc.option(hostile, { nil: null }) }),
    { nil: undefined },
  ),
});

function wellFormed(v: Verdict): boolean {
  if (v.action === 'next')
    return (v.findings ?? []).every((f) => typeof f.check === 'string' && typeof f.tag === 'string');
  if (!isValidReply(v.reply)) return false;
  if (typeof v.reason !== 'string') return false;
  if (v.action === 'reject') return v.reply.code >= 500 && v.reply.enhanced.startsWith('5.');
  if (v.action === 'defer')
    return v.reply.code >= 400 && v.reply.code < 500 && v.reply.enhanced.startsWith('4.');
  return v.action === 'accept';
}

const table = accessTable({
  key: 'sender',
  entries: { 'example.com': 'REJECT', '<>': 'DEFER_IF_PERMIT', 'user@': 'OK', '/^a.*z$/': '550 5.1.8 nope' },
});

describe('parsers never throw', () => {
  it('parseAddress returns ok or a reason', () => {
    fc.assert(
      fc.property(hostile, (s) => {
        const p = parseAddress(s);
        return p.ok ? typeof p.local === 'string' && typeof p.domain === 'string' : p.reason.length > 0;
      }),
      { numRuns: 3000 },
    );
  });
  it('parseAddress accepts what fast-check calls an email address, within the RFC 5321 path limit', () => {
    fc.assert(
      fc.property(fc.emailAddress({ size: 'small' }), (s) => {
        const p = parseAddress(s);
        // fast-check follows RFC 5322/1123: all-numeric TLD-less domains are refused by us (valid_hostname)
        if (!p.ok) return /^[\d.]+$/.test(s.slice(s.lastIndexOf('@') + 1)) || s.length > 254;
        return true;
      }),
      { numRuns: 2000 },
    );
  });
  it('isValidHostname, parseHeloLiteral and inNetworks answer every string', () => {
    fc.assert(
      fc.property(hostile, (s) => {
        expect(typeof isValidHostname(s)).toBe('boolean');
        const l = parseHeloLiteral(s);
        expect(l === null || typeof l.valid === 'boolean').toBe(true);
        expect(typeof inNetworks(s, ['10.0.0.0/8', '::/0'])).toBe('boolean');
      }),
      { numRuns: 3000 },
    );
  });
  it('a valid literal round-trips: its address is in a /32 or /128 of itself', () => {
    fc.assert(
      fc.property(
        fc.oneof(
          fc.ipV4().map((ip) => `[${ip}]`),
          fc.ipV6().map((ip) => `[IPv6:${ip}]`),
        ),
        (lit) => {
          const p = parseHeloLiteral(lit);
          if (!p?.valid) return lit.startsWith('[0.'); // Postfix refuses 0.x.y.z except 0.0.0.0
          return inNetworks(p.address, [p.address]);
        },
      ),
      { numRuns: 2000 },
    );
  });
});

describe('checks never throw and always answer a well-formed verdict', () => {
  const checks: Check[] = [
    ...Object.entries(coreFactories)
      .filter(([name]) => !name.includes('access') && name !== 'trusted')
      .flatMap(([, f]) => HIT_ACTIONS.map((action) => f({ action }, testSite, undefined))),
    coreFactories.trusted!({}, testSite, undefined),
    table,
    accessTable({
      key: 'client',
      entries: { '10.0.0.0/8': 'OK', '198.51': 'REJECT', '.example.org': '450 go' },
    }),
    accessTable({ key: 'helo', entries: { 'example.com': 'REJECT', '192.0.2.0/24': 'DEFER' } }),
    accessTable({ key: 'rdns', entries: { '/dyn/i': 'REJECT' } }),
  ];
  it('for every check and every configured action', () => {
    fc.assert(
      fc.property(sessionArb, (s) => {
        for (const c of checks) {
          const v = c.run(s, ctx) as Verdict;
          expect(v instanceof Promise).toBe(false);
          if (!wellFormed(v)) throw new Error(`${c.name} gave ${JSON.stringify(v)} for ${JSON.stringify(s)}`);
        }
      }),
      { numRuns: 800 },
    );
  });
});
