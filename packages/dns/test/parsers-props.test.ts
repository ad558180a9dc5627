/**
 * Property tests of the DNS package's parsers: no input makes them throw anything but the
 * documented TypeError, and what they return is well formed. These are the functions that see
 * strings from config files (list specs) and from clients (HELO, sender domains, addresses).
 */
import {
  canonicalName,
  classifyListAnswer,
  joinName,
  matchesFilter,
  parseListSpec,
  ptrName,
  reversedIp,
} from '@mxguard/dns';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';

const LABEL = /^[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?$/;
const hostile = fc.oneof(
  fc.string({ maxLength: 300 }),
  fc.string({ unit: 'binary', maxLength: 80 }),
  fc.domain(),
  fc.ipV4(),
  fc.ipV6(),
  fc.constantFrom('', '.', '..', 'a..b', '-a.b', 'a-.b', 'a.b\r\nQUIT', `${'a'.repeat(64)}.b`, 'a.b.'),
);
const octet = fc.integer({ min: 0, max: 255 });
const answer = fc.tuple(octet, octet, octet, octet).map((o) => o.join('.'));

describe('DNS parsers never throw on hostile input, and return well-formed values', () => {
  it('canonicalName and joinName: undefined or a valid name of at most 253 characters', () => {
    fc.assert(
      fc.property(hostile, hostile, (a, b) => {
        for (const n of [canonicalName(a), joinName(a, b)]) {
          if (n === undefined) continue;
          expect(n.length).toBeLessThanOrEqual(253);
          for (const l of n.split('.')) expect(l).toMatch(LABEL);
        }
        // A joined name always ends with the zone: nothing the client sends injects a suffix.
        const j = joinName(a, 'zen.example');
        if (j !== undefined) expect(j.endsWith('.zen.example')).toBe(true);
      }),
      { numRuns: 2000 },
    );
  });

  it('reversedIp and ptrName: undefined, or 4 octets / 32 nibbles', () => {
    fc.assert(
      fc.property(fc.oneof(hostile, fc.ipV4(), fc.ipV6()), (s) => {
        const r = reversedIp(s);
        if (r === undefined) {
          expect(ptrName(s)).toBeUndefined();
          return;
        }
        const parts = r.split('.');
        if (parts.length === 4) for (const p of parts) expect(Number(p)).toBeLessThanOrEqual(255);
        else {
          expect(parts).toHaveLength(32);
          for (const p of parts) expect(p).toMatch(/^[0-9a-f]$/);
        }
        expect(ptrName(s)).toMatch(/\.(in-addr|ip6)\.arpa$/);
      }),
      { numRuns: 2000 },
    );
  });

  it('parseListSpec: a spec or a TypeError naming it, for any string', () => {
    fc.assert(
      fc.property(
        fc.oneof(hostile, fc.stringMatching(/^[a-z.]{1,12}(=[0-9.[\];]{1,20})?(\*-?\d{1,2})?$/)),
        (s) => {
          let spec: ReturnType<typeof parseListSpec>;
          try {
            spec = parseListSpec(s);
          } catch (err) {
            expect(err).toBeInstanceOf(TypeError);
            return;
          }
          expect(canonicalName(spec.zone)).toBe(spec.zone);
          expect(Number.isFinite(spec.weight)).toBe(true);
          if (spec.filter) expect(spec.filter).toHaveLength(4);
        },
      ),
      { numRuns: 2000 },
    );
  });

  it('a filter built from ranges admits exactly the answers inside them', () => {
    const range = fc.tuple(octet, octet).map(([a, b]) => (a <= b ? [a, b] : [b, a]) as [number, number]);
    fc.assert(
      fc.property(fc.tuple(range, range), answer, ([r3, r4], a) => {
        const spec = parseListSpec(`l.example=127.0.[${r3[0]}..${r3[1]}].[${r4[0]}..${r4[1]}]`);
        const [x, y, z, w] = a.split('.').map(Number) as [number, number, number, number];
        const want = x === 127 && y === 0 && z >= r3[0] && z <= r3[1] && w >= r4[0] && w <= r4[1];
        expect(matchesFilter(spec, a)).toBe(want);
      }),
      { numRuns: 2000 },
    );
  });

  it('an answer outside 127/8, in 127.255.255/24 or 127.0.0.255 is never a listing', () => {
    fc.assert(
      fc.property(fc.oneof(answer, hostile), (a) => {
        const c = classifyListAnswer(a);
        const p = a.split('.');
        const isError =
          p.length !== 4 ||
          p[0] !== '127' ||
          (p[1] === '255' && p[2] === '255') ||
          (p[1] === '0' && p[2] === '0' && p[3] === '255');
        if (isError) expect(c).toBe('error');
      }),
      { numRuns: 2000 },
    );
  });
});
