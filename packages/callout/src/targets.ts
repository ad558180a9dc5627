import { BlockList, isIP } from 'node:net';
import type { CalloutResolver, ProbeTarget } from './types.js';

/**
 * Ranges a callout never connects to: loopback, RFC 1918 and RFC 4193 private, link-local, CGNAT
 * (RFC 6598), unspecified, multicast and broadcast. A listed domain whose MX points there is
 * misconfigured or poisoned; probing it would let DNS steer us into our own network.
 */
const FORBIDDEN = (() => {
  const b = new BlockList();
  for (const [net, len] of [
    ['0.0.0.0', 8],
    ['10.0.0.0', 8],
    ['100.64.0.0', 10],
    ['127.0.0.0', 8],
    ['169.254.0.0', 16],
    ['172.16.0.0', 12],
    ['192.168.0.0', 16],
    ['224.0.0.0', 4],
    ['240.0.0.0', 4],
  ] as const) {
    b.addSubnet(net, len, 'ipv4');
  }
  for (const [net, len] of [
    ['::', 128],
    ['::1', 128],
    ['fc00::', 7],
    ['fe80::', 10],
    ['ff00::', 8],
  ] as const) {
    b.addSubnet(net, len, 'ipv6');
  }
  return b;
})();

/** The address in canonical form (IPv4-mapped IPv6 as IPv4, IPv6 lower case), or undefined. */
export function canonicalIp(ip: string): string | undefined {
  const s = ip.trim().toLowerCase();
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/.exec(s);
  if (mapped?.[1] && isIP(mapped[1]) === 4) return mapped[1];
  const v = isIP(s);
  if (v === 0) return undefined;
  if (v === 4) return s;
  // BlockList normalises IPv6 itself; for equality with the client, expand through URL parsing.
  try {
    return new URL(`http://[${s}]/`).hostname.slice(1, -1);
  } catch {
    return s;
  }
}

/**
 * Why an address may not be probed, or `undefined` when it may: not an IP, the client's own
 * address (a client must never steer our callout), one of ours, or a non-public range (unless
 * `allowPrivate`, for tests on loopback).
 */
export function forbiddenTarget(
  address: string,
  clientAddress: string,
  ourAddresses: readonly string[],
  allowPrivate: boolean,
): string | undefined {
  const ip = canonicalIp(address);
  if (!ip) return 'not an IP address';
  if (ip === canonicalIp(clientAddress)) return "the client's own address";
  if (ourAddresses.some((a) => canonicalIp(a) === ip)) return 'one of our own addresses';
  if (!allowPrivate && FORBIDDEN.check(ip, isIP(ip) === 4 ? 'ipv4' : 'ipv6')) return 'a non-public address';
  return undefined;
}

/** The outcome of looking up where to probe a domain. */
export type TargetsResult =
  | {
      /** There is somewhere to probe. */
      readonly ok: true;
      /** The addresses to probe, in order. */
      readonly targets: readonly ProbeTarget[];
      /** The addresses left out and why (ours, the client's, private), for the log. */
      readonly refused: readonly string[];
    }
  | {
      /** Nowhere to probe. */
      readonly ok: false;
      /** `temporary`: DNS failed; `inconclusive`: no usable target (never proof of anything). */
      readonly status: 'temporary' | 'inconclusive';
      /** Why, for the log and the reply. */
      readonly text: string;
    };

/** Limits and exceptions of the target lookup. */
export interface TargetOptions {
  /** The client's address: never probed (no probe back at whoever asked). */
  readonly clientAddress: string;
  /** Our own addresses: never probed. */
  readonly ourAddresses: readonly string[];
  /** Allow loopback and private targets (tests and labs only). */
  readonly allowPrivate: boolean;
  /** MX hosts tried, best priority first. */
  readonly maxHosts: number;
  /** Addresses tried in total, as Postfix's `smtp_mx_address_limit` (5). */
  readonly maxAddresses: number;
  /** Also probe over IPv6. */
  readonly ipv6: boolean;
}

/**
 * The probe targets of a listed domain, from its MX records only (RFC 5321 section 5.1: the
 * domain's own address records when it has no MX; none for a null MX, RFC 7505). Forbidden
 * addresses are dropped and named in `refused`.
 */
export async function lookupTargets(
  resolver: CalloutResolver,
  domain: string,
  o: TargetOptions,
): Promise<TargetsResult> {
  const mx = await resolver.mx(domain);
  let hosts: string[];
  if (mx.ok) {
    const sorted = [...mx.records].sort((a, b) => a.priority - b.priority);
    if (sorted.some((r) => r.exchange === '' || r.exchange === '.')) {
      return { ok: false, status: 'inconclusive', text: `${domain} has a null MX` };
    }
    hosts = sorted.map((r) => r.exchange.toLowerCase().replace(/\.$/, ''));
  } else if (mx.error === 'notfound') {
    hosts = [domain];
  } else {
    return { ok: false, status: 'temporary', text: `MX lookup of ${domain} failed temporarily` };
  }
  const targets: ProbeTarget[] = [];
  const refused: string[] = [];
  let temporary = 0;
  for (const host of [...new Set(hosts)].slice(0, o.maxHosts)) {
    const answers = await Promise.all([resolver.a(host), o.ipv6 ? resolver.aaaa(host) : undefined]);
    for (const ans of answers) {
      if (!ans) continue;
      if (!ans.ok) {
        if (ans.error === 'temporary') temporary++;
        continue;
      }
      for (const address of ans.records) {
        const why = forbiddenTarget(address, o.clientAddress, o.ourAddresses, o.allowPrivate);
        if (why) refused.push(`${host}[${address}]: ${why}`);
        else if (targets.length < o.maxAddresses) targets.push({ host, address });
      }
    }
  }
  if (targets.length > 0) return { ok: true, targets, refused };
  if (refused.length > 0) {
    return {
      ok: false,
      status: 'inconclusive',
      text: `no acceptable MX target for ${domain} (${refused.join('; ')})`,
    };
  }
  if (temporary > 0)
    return { ok: false, status: 'temporary', text: `address lookup for the MX of ${domain} failed` };
  return { ok: false, status: 'inconclusive', text: `the MX hosts of ${domain} have no address` };
}
