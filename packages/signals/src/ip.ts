/**
 * Address helpers shared by the signals: parse once, unwrap IPv4-mapped IPv6 (what a dual-stack
 * Node server reports for an IPv4 client, `::ffff:192.0.2.1`), and say whether an address is a
 * public unicast one that a geolocation database or a DNS list can say anything about.
 */
import ipaddr from 'ipaddr.js';

/** A parsed client address, IPv4-mapped IPv6 already unwrapped to IPv4. */
export interface ParsedAddress {
  readonly family: 4 | 6;
  /** Canonical text: dotted quad, or RFC 5952 compressed IPv6. */
  readonly text: string;
  /** Network-order bytes: 4 for IPv4, 16 for IPv6. */
  readonly bytes: readonly number[];
  /** ipaddr.js range name: `unicast` for public addresses, else `private`, `loopback`, `linkLocal`, ... */
  readonly range: string;
}

/** Longest text we try to parse as an address; anything longer is not one (bounds hostile input). */
const MAX_ADDRESS_TEXT = 64;

/**
 * Parses an IPv4 or IPv6 address (an `IPv6:` prefix as in RFC 5321 address literals and a zone
 * index `%eth0` are accepted and dropped). Returns `undefined` for anything that is not an
 * address; never throws.
 */
export function parseAddress(text: string): ParsedAddress | undefined {
  if (typeof text !== 'string' || text.length === 0 || text.length > MAX_ADDRESS_TEXT) return undefined;
  let s = text.trim();
  if (/^ipv6:/i.test(s)) s = s.slice(5);
  const zone = s.indexOf('%');
  if (zone >= 0) s = s.slice(0, zone);
  // ipaddr.js accepts legacy IPv4 forms (`127.1`, octal, hex); a mail client address is dotted quad.
  const v4 = /^\d{1,3}(\.\d{1,3}){3}$/.test(s);
  if (!v4 && !s.includes(':')) return undefined;
  if (!ipaddr.isValid(s)) return undefined;
  try {
    let addr = ipaddr.parse(s);
    if (addr.kind() === 'ipv6' && (addr as ipaddr.IPv6).isIPv4MappedAddress()) {
      addr = (addr as ipaddr.IPv6).toIPv4Address();
    }
    const family = addr.kind() === 'ipv4' ? 4 : 6;
    return { family, text: addr.toString(), bytes: addr.toByteArray(), range: addr.range() };
  } catch {
    return undefined;
  }
}

/** True for public unicast addresses (not private, loopback, link-local, CGNAT, documentation...). */
export function isPublic(a: ParsedAddress): boolean {
  return a.range === 'unicast';
}

/**
 * A matcher for a list of addresses and CIDRs (Postfix `mynetworks` style). Entries that are not
 * addresses or CIDRs (host names, typos) are ignored here; the caller validates its config.
 */
export function addressMatcher(entries: readonly string[]): (a: ParsedAddress) => boolean {
  const nets: [ipaddr.IPv4 | ipaddr.IPv6, number][] = [];
  for (const e of entries) {
    const s = e.trim();
    try {
      if (s.includes('/')) {
        if (ipaddr.isValidCIDR(s)) nets.push(ipaddr.parseCIDR(s));
      } else {
        const p = parseAddress(s);
        if (p) nets.push([ipaddr.parse(p.text), p.family === 4 ? 32 : 128]);
      }
    } catch {
      // not an address: ignored
    }
  }
  return (a) => {
    if (nets.length === 0) return false;
    const addr = ipaddr.parse(a.text);
    for (const [net, bits] of nets) {
      if (net.kind() !== addr.kind()) continue;
      if ((addr as ipaddr.IPv4).match(net as ipaddr.IPv4, bits)) return true;
    }
    return false;
  };
}
