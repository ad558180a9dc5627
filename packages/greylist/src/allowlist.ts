import { type ParsedIp, parseClientIp, parseNetwork, v4Mask } from '@mxguard/core';
import type { IPv4, IPv6 } from 'ipaddr.js';
import ipaddr from 'ipaddr.js';

/**
 * Allowlists: clients the greylist never delays (by address, network, forward-confirmed host name
 * or regular expression) and recipients it never delays for. Entries are plain strings so config
 * files can write them:
 * - `192.0.2.7`, `2001:db8::1`: one address;
 * - `192.0.2.0/24`, `2001:db8::/32`: a network;
 * - `192.0.2`: a partial IPv4 address, as postgrey's whitelist_clients writes a /24 (or /16, /8);
 * - `example.com`: a host name and every name under it (postgrey: `(^|\.)example\.com$`);
 * - `/^mail\d+\.example\.com$/`: a regular expression on the host name (case-insensitive).
 * Host names and expressions match only the client's forward-confirmed PTR name (Postfix's
 * `client_name`, `rdns.verified`), never a name the client claims (HELO) nor an unconfirmed PTR,
 * which anyone who controls their reverse zone can set.
 */
export interface ClientAllowlist {
  /**
   * True when the client matches; `name` is its forward-confirmed PTR name, if any. `parsed` is the
   * address already parsed (the session's `clientIp`), so it is not parsed again.
   */
  match(address: string, name: string | null | undefined, parsed?: ParsedIp | null): string | undefined;
  /** The number of entries (addresses, networks, names and patterns) in the list. */
  readonly size: number;
}

type Net = [IPv4 | IPv6, number];

/** Compiles client allowlist entries; throws TypeError naming a bad entry. */
export function clientAllowlist(entries: readonly string[]): ClientAllowlist {
  const nets: { net: Net; entry: string }[] = [];
  // IPv4 networks also as (network, mask) numbers, tested without an address object.
  const v4: { net: number; mask: number; entry: string }[] = [];
  const suffixes = new Map<string, string>();
  const patterns: { re: RegExp; entry: string }[] = [];
  for (const raw of entries) {
    const e = raw.trim();
    if (e === '' || e.startsWith('#')) continue;
    const re = /^\/(.+)\/([a-z]*)$/.exec(e);
    if (re) {
      try {
        patterns.push({ re: new RegExp(re[1] ?? '', `${(re[2] ?? '').replace('i', '')}i`), entry: e });
      } catch (err) {
        throw new TypeError(`allowlist entry ${e}: ${err instanceof Error ? err.message : String(err)}`);
      }
      continue;
    }
    const net = parseNet(e);
    if (net) {
      nets.push({ net, entry: e });
      // spread: once
      if (net[0].kind() === 'ipv4') v4.push({ ...v4Mask(net[0] as IPv4, net[1]), entry: e });
      continue;
    }
    if (/^[a-z0-9_-]+(?:\.[a-z0-9_-]+)*\.?$/i.test(e)) {
      suffixes.set(e.toLowerCase().replace(/\.$/, ''), e);
      continue;
    }
    throw new TypeError(`allowlist entry "${e}" is not an address, network, host name or /regex/`);
  }
  return {
    size: nets.length + suffixes.size + patterns.length,
    match(address, name, parsed) {
      const p = parsed === undefined ? parseClientIp(address) : parsed;
      if (p?.v4 !== undefined) {
        for (const r of v4) if ((p.v4 & r.mask) >>> 0 === r.net) return r.entry;
      } else if (p) {
        const ip = p.ip;
        for (const { net, entry } of nets) {
          if (ip.kind() === net[0].kind() && ip.match(net)) return entry;
        }
      }
      if (!name) return undefined;
      const n = name.toLowerCase().replace(/\.$/, '');
      // Walk the name's suffixes: mail-a.b.google.com, b.google.com, google.com, com.
      for (let i = 0; i >= 0 && i < n.length; ) {
        const hit = suffixes.get(n.slice(i));
        if (hit !== undefined) return hit;
        const dot = n.indexOf('.', i);
        i = dot < 0 ? -1 : dot + 1;
      }
      for (const { re, entry } of patterns) if (re.test(n)) return entry;
      return undefined;
    },
  };
}

/** `a.b.c.d`, `a.b.c.d/n`, IPv6 forms, or a partial IPv4 address `a.b.c` (a /24), `a.b` (a /16). */
function parseNet(e: string): Net | undefined {
  // Addresses and CIDRs as every mxguard network list reads them (core's parseNetwork: IPv4-mapped
  // IPv6 is IPv4, a CIDR with host bits set is refused as the typo it almost always is).
  if (e.includes(':') || /^\d{1,3}(?:\.\d{1,3}){3}(?:\/\d{1,3})?$/.test(e))
    return parseNetwork(e, 'allowlist entry');
  const partial = /^(\d{1,3})\.(\d{1,3})(?:\.(\d{1,3}))?\.?$/.exec(e);
  if (partial) {
    const octets = [partial[1], partial[2], partial[3]]
      .filter((x): x is string => x !== undefined)
      .map(Number);
    if (octets.some((o) => o > 255)) return undefined;
    const bits = octets.length * 8;
    while (octets.length < 4) octets.push(0);
    return [new ipaddr.IPv4(octets), bits];
  }
  return undefined;
}

/**
 * Recipients the greylist never delays for, as postgrey's whitelist_recipients:
 * - `postmaster@`, `abuse@`: that local part at any domain (with or without a `+extension`);
 * - `user@example.com`: one address (and its `+extension` forms);
 * - `example.com`: every address at that domain and its subdomains.
 * RFC 5321 section 4.5.1 requires postmaster to accept mail; delaying reports to abuse@ helps no one.
 */
export function recipientAllowlist(entries: readonly string[]): (rcpt: string) => string | undefined {
  const rules: { test: (local: string, domain: string) => boolean; entry: string }[] = [];
  for (const raw of entries) {
    const e = raw.trim().toLowerCase();
    if (e === '' || e.startsWith('#')) continue;
    const at = e.indexOf('@');
    if (at < 0) {
      rules.push({ test: (_l, d) => d === e || d.endsWith(`.${e}`), entry: raw });
    } else {
      const user = e.slice(0, at);
      const domain = e.slice(at + 1);
      rules.push({
        test: (l, d) => (l === user || l.startsWith(`${user}+`)) && (domain === '' || d === domain),
        entry: raw,
      });
    }
  }
  return (rcpt) => {
    const r = rcpt.trim().replace(/^<|>$/g, '').toLowerCase();
    const at = r.lastIndexOf('@');
    const local = at < 0 ? r : r.slice(0, at);
    const domain = at < 0 ? '' : r.slice(at + 1);
    for (const rule of rules) if (rule.test(local, domain)) return rule.entry;
    return undefined;
  };
}

/**
 * Reads postgrey's whitelist_clients format (one entry a line, `#` comments, `/regex/`, addresses,
 * partial addresses, host names) into allowlist entries, so a site can keep its postgrey file.
 */
export function parsePostgreyWhitelist(text: string): string[] {
  return text
    .split(/\r?\n/)
    .map((l) => l.replace(/(^|\s)#.*$/, '').trim())
    .filter((l) => l.length > 0);
}
