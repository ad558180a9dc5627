import { ipNetwork, type ParsedIp } from '@mxguard/core';

/** How client addresses are grouped into networks: one record a network, as spammers rotate addresses. */
export interface NetworkOptions {
  /**
   * IPv4 prefix length of a client network. A /24 is what one customer or one spam operation
   * typically holds; postgrey groups IPv4 clients the same way (`--lookup-by-subnet`).
   * @default 24
   */
  readonly ipv4Prefix?: number;
  /**
   * IPv6 prefix length. A /64 is the smallest network an ISP hands a customer (RFC 6177), so a
   * host can rotate through 2^64 addresses inside it; counting per address would be useless.
   * @default 64
   */
  readonly ipv6Prefix?: number;
}

/**
 * The client's network in CIDR notation (`192.0.2.0/24`, `2001:db8:1:2::/64`), the key of its
 * reputation record. IPv4-mapped IPv6 addresses count as IPv4. Takes the address as text or as
 * parsed once for the session (`clientIp`). Returns `undefined` for a string that is not an IP
 * address: the caller then has no record to consult.
 */
export function networkOf(address: string | ParsedIp, options: NetworkOptions = {}): string | undefined {
  return ipNetwork(address, options.ipv4Prefix ?? 24, options.ipv6Prefix ?? 64);
}
