/**
 * DNS list specs as postscreen names them (postscreen_dnsbl_sites), one string each:
 * `zone[=filter][*weight]`, e.g. `zen.spamhaus.org=127.0.0.[2..11]*3` or
 * `list.dnswl.org=127.0.[0..255].[1..3]*-2`. The filter is Postfix's: four dot-separated octet
 * patterns, each a number or a bracketed list of numbers and `lo..hi` ranges separated by `;`
 * (`127.0.0.[2;4;6..8]`). Parsing is pure; bad specs throw a TypeError that names the spec.
 */
import { canonicalName } from './names.js';

/** One octet pattern: the values it admits, as inclusive ranges. */
export type OctetPattern = readonly (readonly [number, number])[];

/** A parsed list spec. */
export interface ListSpec {
  /** The zone queried, lower case without trailing dot. */
  readonly zone: string;
  /** Octet patterns of the answers that count as a listing; `undefined`: any 127/8 answer. */
  readonly filter?: readonly [OctetPattern, OctetPattern, OctetPattern, OctetPattern];
  /** Points a listing adds; negative for allowlists. @default 1 */
  readonly weight: number;
  /** The spec as written, for logs and errors. */
  readonly spec: string;
}

function bad(spec: string, why: string): TypeError {
  return new TypeError(`DNS list "${spec}": ${why}`);
}

function octet(spec: string, s: string): number {
  if (!/^\d{1,3}$/.test(s)) throw bad(spec, `"${s}" is not an octet (0..255)`);
  const n = Number(s);
  if (n > 255) throw bad(spec, `${n} is not an octet (0..255)`);
  return n;
}

function parseOctetPattern(spec: string, p: string): OctetPattern {
  if (p.startsWith('[')) {
    if (!p.endsWith(']')) throw bad(spec, `unbalanced "[" in "${p}"`);
    const inner = p.slice(1, -1);
    if (inner.length === 0) throw bad(spec, 'empty "[]" in the filter');
    return inner.split(';').map((item): readonly [number, number] => {
      const range = item.split('..');
      if (range.length === 1) {
        const v = octet(spec, item);
        return [v, v];
      }
      if (range.length !== 2) throw bad(spec, `"${item}" is not a number or a lo..hi range`);
      const lo = octet(spec, range[0] ?? '');
      const hi = octet(spec, range[1] ?? '');
      if (lo > hi) throw bad(spec, `range ${lo}..${hi} is empty`);
      return [lo, hi];
    });
  }
  const v = octet(spec, p);
  return [[v, v]];
}

/** Splits `a.b.[c..d].e` on the dots outside brackets. */
function splitOctets(spec: string, filter: string): string[] {
  const parts: string[] = [];
  let depth = 0;
  let cur = '';
  for (const ch of filter) {
    if (ch === '[') depth++;
    if (ch === ']') depth--;
    if (depth < 0 || depth > 1) throw bad(spec, 'unbalanced brackets in the filter');
    if (ch === '.' && depth === 0) {
      parts.push(cur);
      cur = '';
    } else cur += ch;
  }
  if (depth !== 0) throw bad(spec, 'unbalanced brackets in the filter');
  parts.push(cur);
  return parts;
}

/**
 * Parses `zone[=filter][*weight]`. Throws TypeError with the spec and the reason on: an invalid
 * zone, a filter that is not four octet patterns, an octet above 255, an empty range, a weight
 * that is not an integer.
 */
export function parseListSpec(spec: string): ListSpec {
  if (typeof spec !== 'string')
    throw new TypeError(`DNS list spec must be a string, got ${JSON.stringify(spec)}`);
  const s = spec.trim();
  let body = s;
  let weight = 1;
  const star = s.lastIndexOf('*');
  if (star >= 0) {
    const w = s.slice(star + 1);
    if (!/^[+-]?\d+$/.test(w)) throw bad(spec, `weight "${w}" is not an integer`);
    weight = Number(w);
    body = s.slice(0, star);
  }
  const eq = body.indexOf('=');
  const zoneText = eq >= 0 ? body.slice(0, eq) : body;
  const zone = canonicalName(zoneText);
  if (zone === undefined || !zone.includes('.')) throw bad(spec, `"${zoneText}" is not a DNS zone name`);
  if (eq < 0) return { zone, weight, spec: s };
  const filterText = body.slice(eq + 1);
  if (filterText.length === 0) throw bad(spec, 'empty filter after "="');
  const parts = splitOctets(spec, filterText);
  if (parts.length !== 4) throw bad(spec, `filter "${filterText}" must have four octet patterns`);
  const [a, b, c, d] = parts.map((p) => parseOctetPattern(spec, p)) as [
    OctetPattern,
    OctetPattern,
    OctetPattern,
    OctetPattern,
  ];
  return { zone, filter: [a, b, c, d], weight, spec: s };
}

/** Parses a list of specs, or returns already parsed ones as they are. */
export function parseListSpecs(
  specs: readonly (string | ListSpec)[] | undefined,
  what = 'lists',
): ListSpec[] {
  if (specs === undefined) return [];
  if (!Array.isArray(specs)) throw new TypeError(`${what} must be a list of "zone=filter*weight" strings`);
  return specs.map((s) => (typeof s === 'string' ? parseListSpec(s) : s));
}

/** True when an IPv4 answer matches the spec's filter (no filter: any answer matches). */
export function matchesFilter(spec: ListSpec, answer: string): boolean {
  if (!spec.filter) return true;
  const parts = answer.split('.');
  if (parts.length !== 4) return false;
  return spec.filter.every((pattern, i) => {
    const v = Number(parts[i]);
    return pattern.some(([lo, hi]) => v >= lo && v <= hi);
  });
}
