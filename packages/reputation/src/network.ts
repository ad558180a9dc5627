import ipaddr from 'ipaddr.js';

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
 * reputation record. IPv4-mapped IPv6 addresses count as IPv4. Returns `undefined` for a string
 * that is not an IP address: the caller then has no record to consult.
 */
export function networkOf(address: string, options: NetworkOptions = {}): string | undefined {
  const v4 = options.ipv4Prefix ?? 24;
  const v6 = options.ipv6Prefix ?? 64;
  if (!Number.isInteger(v4) || v4 < 0 || v4 > 32) throw new TypeError(`ipv4Prefix ${v4} is not in 0..32`);
  if (!Number.isInteger(v6) || v6 < 0 || v6 > 128) throw new TypeError(`ipv6Prefix ${v6} is not in 0..128`);
  let ip: ipaddr.IPv4 | ipaddr.IPv6;
  try {
    ip = ipaddr.parse(address.trim());
  } catch {
    return undefined;
  }
  if (ip.kind() === 'ipv6' && (ip as ipaddr.IPv6).isIPv4MappedAddress())
    ip = (ip as ipaddr.IPv6).toIPv4Address();
  if (ip.kind() === 'ipv4') {
    const bytes = ip.toByteArray();
    return `${maskBytes(bytes, v4).join('.')}/${v4}`;
  }
  const bytes = maskBytes(ip.toByteArray(), v6);
  const net = ipaddr.fromByteArray(bytes) as ipaddr.IPv6;
  return `${net.toString()}/${v6}`;
}

function maskBytes(bytes: number[], prefix: number): number[] {
  return bytes.map((b, i) => {
    const bits = Math.max(0, Math.min(8, prefix - i * 8));
    return bits === 0 ? 0 : b & ((0xff << (8 - bits)) & 0xff);
  });
}
