/**
 * Names built from client input (HELO, MAIL FROM domain, PTR names) are validated before any query:
 * a stranger must not be able to make us query an empty label, an over-long name, or a name with
 * an injected suffix (`evil.example.zen.spamhaus.org.` is a different zone once joined).
 */
import { parseIp } from '@mxguard/core';

/** RFC 1035 2.3.4: a label is 1..63 octets, a name at most 253 characters in text form. */
const LABEL = /^[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?$/;
const MAX_NAME = 253;

/**
 * The name in canonical form (lower case, no trailing dot) when it is a valid DNS host name (LDH
 * labels, underscore allowed for service-style names, 1..63 characters a label, 253 in all, at
 * least one label), else `undefined`. Rejects spaces, empty labels (`a..b`), a leading dot, and
 * anything that is not ASCII (IDNs arrive as A-labels over SMTP, RFC 6531 aside).
 */
export function canonicalName(name: unknown): string | undefined {
  if (typeof name !== 'string') return undefined;
  let n = name.toLowerCase();
  if (n.endsWith('.')) n = n.slice(0, -1);
  if (n.length === 0 || n.length > MAX_NAME) return undefined;
  const labels = n.split('.');
  for (const l of labels) if (!LABEL.test(l)) return undefined;
  return n;
}

/** `name.zone` when both are valid and the whole fits in 253 characters, else `undefined`. */
export function joinName(name: string, zone: string): string | undefined {
  const a = canonicalName(name);
  const z = canonicalName(zone);
  if (a === undefined || z === undefined) return undefined;
  return canonicalName(`${a}.${z}`);
}

/**
 * The address as the client really is: IPv4-mapped IPv6 (`::ffff:192.0.2.1`) becomes IPv4, IPv6 is
 * RFC 5952 compressed; `undefined` when not an address. One parser for all packages: core's
 * `parseIp` (strict dotted quad, no `127.1` shorthand).
 */
export function normaliseIp(ip: string): string | undefined {
  return parseIp(ip)?.address;
}

/**
 * The DNS-list query label of an address (RFC 5782 2.1 and 2.4): IPv4 as its four octets reversed
 * (`192.0.2.1` -> `1.2.0.192`), IPv6 as its 32 nibbles reversed. IPv4-mapped addresses are
 * queried as IPv4. `undefined` for anything that is not an IP address.
 */
export function reversedIp(ip: string): string | undefined {
  const p = parseIp(ip);
  if (!p) return undefined;
  const bytes = p.ip.toByteArray();
  if (p.family === 4) return bytes.reverse().join('.');
  const nibbles: string[] = [];
  for (const b of bytes) nibbles.push((b >> 4).toString(16), (b & 15).toString(16));
  return nibbles.reverse().join('.');
}

/** The PTR query name of an address: `...in-addr.arpa` or `...ip6.arpa`. */
export function ptrName(ip: string): string | undefined {
  const n = normaliseIp(ip);
  const r = n === undefined ? undefined : reversedIp(n);
  if (n === undefined || r === undefined) return undefined;
  return `${r}.${n.includes(':') ? 'ip6.arpa' : 'in-addr.arpa'}`;
}

/** True for the address family of `ip`: 4 or 6 (after IPv4-mapped normalisation). */
export function ipFamily(ip: string): 4 | 6 | undefined {
  const n = normaliseIp(ip);
  if (n === undefined) return undefined;
  return n.includes(':') ? 6 : 4;
}

const NON_PUBLIC = new Set([
  'unspecified',
  'loopback',
  'private',
  'linkLocal',
  'carrierGradeNat',
  'uniqueLocal',
  'multicast',
  'broadcast',
]);

/**
 * True when an address cannot be a public mail exchanger: loopback, RFC 1918 / RFC 4193 private,
 * link-local, unspecified, CGNAT (RFC 6598), multicast or broadcast. Used to spot a domain whose
 * MX points only at such addresses: nobody on the Internet can deliver a bounce there.
 * (Documentation ranges such as 192.0.2.0/24 are not in the list: tests use them as public.)
 */
export function isNonPublicAddress(ip: string): boolean {
  const p = parseIp(ip);
  return p !== null && NON_PUBLIC.has(p.ip.range());
}

/** The domain part of an address (after the last `@`), lower case; `undefined` if none. */
export function domainOf(address: string | undefined): string | undefined {
  if (typeof address !== 'string') return undefined;
  const at = address.lastIndexOf('@');
  if (at < 0 || at === address.length - 1) return undefined;
  return address.slice(at + 1).toLowerCase();
}

/** Text safe to put in a one-line SMTP reply: printable ASCII, bounded. */
export function printable(s: string, max = 200): string {
  const t = s.replace(/[^\x20-\x7e]/g, '?');
  return t.length > max ? `${t.slice(0, max)}...` : t;
}
