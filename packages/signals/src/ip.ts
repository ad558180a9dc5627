/**
 * Address helpers shared by the signals: parse once, unwrap IPv4-mapped IPv6 (what a dual-stack
 * Node server reports for an IPv4 client, `::ffff:192.0.2.1`), and say whether an address is a
 * public unicast one that a geolocation database or a DNS list can say anything about.
 */
import { parseClientIp } from '@mxguard/core';
import type { IPv4, IPv6 } from 'ipaddr.js';
import ipaddr from 'ipaddr.js';

/** A parsed client address, IPv4-mapped IPv6 already unwrapped to IPv4. */
export interface ParsedAddress {
  /** IPv4 or IPv6 (an IPv4-mapped IPv6 address is IPv4). */
  readonly family: 4 | 6;
  /** Canonical text: dotted quad, or RFC 5952 compressed IPv6. */
  readonly text: string;
  /** Network-order bytes: 4 for IPv4, 16 for IPv6. */
  readonly bytes: readonly number[];
  /** ipaddr.js range name: `unicast` for public addresses, else `private`, `loopback`, `linkLocal`, ... */
  readonly range: string;
}

/**
 * Parses an IPv4 or IPv6 address (brackets, an `IPv6:` prefix as in RFC 5321 address literals and a
 * zone index `%eth0` are accepted and dropped) with core's `parseClientIp`, the one address parser
 * of mxguard. Returns `undefined` for anything that is not an address; never throws.
 */
export function parseAddress(text: string): ParsedAddress | undefined {
  const p = parseClientIp(text);
  if (!p) return undefined;
  return { family: p.family, text: p.address, bytes: p.ip.toByteArray(), range: p.ip.range() };
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
  const nets: [IPv4 | IPv6, number][] = [];
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
      if ((addr as IPv4).match(net as IPv4, bits)) return true;
    }
    return false;
  };
}
