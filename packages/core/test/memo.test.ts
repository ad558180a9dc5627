import {
  clientIp,
  compileNetworks,
  ipNetwork,
  MEMO_SESSIONS,
  memo,
  memoKey,
  parseClientIp,
  parseIp,
  type Session,
} from '@mxguard/core';
import fc from 'fast-check';
import ipaddr from 'ipaddr.js';
import { describe, expect, it } from 'vitest';

describe('the per-session memo', () => {
  it('parses the client address once a session and shares the result', () => {
    const s: Session = { clientAddress: '::ffff:192.0.2.7', stage: 'rcpt' };
    const a = clientIp(s);
    expect(a?.address).toBe('192.0.2.7');
    expect(clientIp(s)).toBe(a);
    // Another session object is another memo.
    const t: Session = { ...s };
    expect(clientIp(t)).not.toBe(a);
    expect(clientIp(t)?.address).toBe('192.0.2.7');
  });

  it('computes again when the field it was computed from changed on the same object', () => {
    const s = { clientAddress: '192.0.2.7', stage: 'rcpt' } as { clientAddress: string; stage: 'rcpt' };
    expect(clientIp(s)?.address).toBe('192.0.2.7');
    s.clientAddress = '2001:db8::1';
    expect(clientIp(s)?.address).toBe('2001:db8::1');
    s.clientAddress = 'not an address';
    expect(clientIp(s)).toBeNull();
  });

  it('keeps each session its own values when evaluations of several sessions interleave', () => {
    const sessions: Session[] = ['192.0.2.1', '2001:db8::7', 'bogus', '::ffff:198.51.100.9'].map(
      (clientAddress) => ({ clientAddress, stage: 'rcpt' }),
    );
    const first = sessions.map((s) => clientIp(s));
    // Asked again in another order (the memo's last-session shortcut is not the answer for all).
    for (const i of [3, 0, 2, 1, 1, 0, 3]) {
      const s = sessions[i] as Session;
      expect(clientIp(s)).toBe(first[i]);
      expect(clientIp(s)).toEqual(parseClientIp(s.clientAddress));
    }
    expect(first.map((p) => p?.address ?? null)).toEqual(['192.0.2.1', '2001:db8::7', null, '198.51.100.9']);
  });

  it('computes once a session for MEMO_SESSIONS sessions in rotation, and stays right past them', () => {
    const k = memoKey<string>('upper');
    let calls = 0;
    const upper = (x: string) => {
      calls++;
      return x.toUpperCase();
    };
    const make = (n: number): Session[] =>
      Array.from({ length: n }, (_, i) => ({ clientAddress: `192.0.2.${i}`, stage: 'rcpt' as const }));
    const few = make(MEMO_SESSIONS);
    for (let round = 0; round < 3; round++)
      for (const s of few) expect(memo(s, k, s.clientAddress, upper)).toBe(s.clientAddress.toUpperCase());
    expect(calls).toBe(MEMO_SESSIONS);
    // More sessions than it keeps: values are computed again, never mixed up.
    calls = 0;
    const many = make(3 * MEMO_SESSIONS);
    for (let round = 0; round < 3; round++)
      for (const s of many) expect(memo(s, k, s.clientAddress, upper)).toBe(s.clientAddress.toUpperCase());
    expect(calls).toBe(3 * 3 * MEMO_SESSIONS);
  });

  it('keeps one value a key, and calls compute once for one input', () => {
    const s: Session = { clientAddress: '192.0.2.7', stage: 'rcpt', helo: 'Mail.Example.COM' };
    const k = memoKey<string>('helo-lower');
    let calls = 0;
    const lower = (x: string | undefined) => {
      calls++;
      return (x ?? '').toLowerCase();
    };
    expect(memo(s, k, s.helo, lower)).toBe('mail.example.com');
    expect(memo(s, k, s.helo, lower)).toBe('mail.example.com');
    expect(calls).toBe(1);
  });
});

/** The dotted-quad reading the one-pass parser replaced: a regular expression and Number(). */
function referenceV4(s: string): string | null {
  const m = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(s);
  if (!m) return null;
  const o = [m[1], m[2], m[3], m[4]].map(Number);
  if (o.some((x) => x > 255)) return null;
  return o.join('.');
}

describe('the one-pass IPv4 parser', () => {
  const quadish = fc
    .array(
      fc.oneof(fc.constantFrom('.', '0', '00', '1', '25', '255', '256', '999', '1000', '-', ' ', 'a', ':')),
      {
        maxLength: 10,
      },
    )
    .map((parts) => parts.join(''));

  it('reads exactly what the regular expression read, with the same canonical text', () => {
    fc.assert(
      fc.property(fc.oneof(quadish, fc.string({ maxLength: 20 })), (s) => {
        const ref = referenceV4(s);
        const got = parseIp(s);
        if (ref === null) {
          // Not a dotted quad: either nothing, or an IPv6 address (never an IPv4 from a non-quad).
          if (got !== null) expect(s.includes(':')).toBe(true);
        } else {
          expect(got?.address).toBe(ref);
          expect(got?.family).toBe(4);
          expect(got?.ip.toString()).toBe(ref);
          expect(got?.v4).toBe(
            ipaddr.IPv4.parse(ref)
              .toByteArray()
              .reduce((n, b) => n * 256 + b, 0),
          );
        }
      }),
      { numRuns: 5000, seed: 17 },
    );
  });

  it('masks networks and tests membership as ipaddr.js does', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 0xffffffff }), fc.integer({ min: 0, max: 32 }), (n, bits) => {
        const text = `${n >>> 24}.${(n >>> 16) & 255}.${(n >>> 8) & 255}.${n & 255}`;
        const p = parseClientIp(text);
        const net = ipNetwork(text, bits, 64) as string;
        const ref = ipaddr.IPv4.networkAddressFromCIDR(`${text}/${bits}`).toString();
        expect(net).toBe(`${ref}/${bits}`);
        expect(p && compileNetworks([net]).has(p)).toBe(true);
        expect(compileNetworks([net]).has(text)).toBe(true);
        if (bits > 0) {
          // The address with the last network bit flipped is outside.
          const out = (n ^ (1 << (32 - bits))) >>> 0;
          const outText = `${out >>> 24}.${(out >>> 16) & 255}.${(out >>> 8) & 255}.${out & 255}`;
          expect(compileNetworks([net]).has(outText)).toBe(false);
        }
      }),
      { numRuns: 3000, seed: 17 },
    );
  });

  it('finds an IPv4 client in an IPv6 network exactly when its IPv4-mapped form is in it', () => {
    // The IPv6 networks are turned into IPv4 ones when compiled; ipaddr.js matching the mapped
    // address is the reference.
    const v4 = fc.tuple(fc.nat(255), fc.nat(255), fc.nat(255), fc.nat(255)).map((o) => o.join('.'));
    const v6net = fc.oneof(
      fc.tuple(v4, fc.integer({ min: 96, max: 128 })).map(([a, bits]) => {
        const base = ipaddr.IPv6.networkAddressFromCIDR(`::ffff:${a}/${bits}`);
        return `${base.toString()}/${bits}`;
      }),
      fc
        .integer({ min: 0, max: 96 })
        .map((bits) => `${ipaddr.IPv6.networkAddressFromCIDR(`::ffff:0:0/${bits}`)}/${bits}`),
      fc.constantFrom('::/0', '::1/128', '2001:db8::/32', '::fffe:0:0/96', '::/96', '::ffff:0:0/97'),
    );
    fc.assert(
      fc.property(v4, v6net, (client, net) => {
        const want = ipaddr.IPv4.parse(client).toIPv4MappedAddress().match(ipaddr.parseCIDR(net));
        expect(compileNetworks([net]).has(client)).toBe(want);
        expect(compileNetworks(['192.0.2.0/24', net]).has(client)).toBe(
          want || client.startsWith('192.0.2.'),
        );
      }),
      { numRuns: 3000, seed: 29 },
    );
  });
});
