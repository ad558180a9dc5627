/**
 * Pure helpers for host names, IP addresses and networks, shared by the envelope checks.
 * Everything here takes a stranger's string and answers with a value; nothing throws on a
 * stranger's input. Only configuration (a network list of our own) throws, at construction.
 */
import { domainToASCII } from 'node:url';
import type { IPv4, IPv6 } from 'ipaddr.js';
import ipaddr from 'ipaddr.js';
import type { HitAction } from '../reply.js';
import { HIT_ACTIONS } from '../reply.js';

/** RFC 1035 2.3.4, Postfix VALID_HOSTNAME_LEN: a name of more octets is not a host name. */
export const MAX_HOSTNAME_OCTETS = 255;
/** RFC 1035 2.3.4, Postfix VALID_LABEL_LEN. */
export const MAX_LABEL_OCTETS = 63;

/** Options of {@link isValidHostname}. */
export interface HostnameOptions {
  /**
   * Accept UTF-8 (U-label) names, as Postfix does with `smtputf8_enable = yes` (its default since
   * 3.0): the name is converted to A-labels (UTS #46) and the A-label form is judged.
   * @default true
   */
  readonly utf8?: boolean;
}

function isAsciiHostname(name: string): boolean {
  // The same rules as Postfix's valid_hostname(): letters, digits, '_' (tolerated: "grr.." in
  // the source, Windows hosts use it), '-' not at either end of a label, no empty label, labels
  // of at most 63 octets, at most 255 octets in all, and not all-numeric (so a dotted quad or
  // `12345` is not a host name).
  const n = name.length;
  if (n === 0 || n > MAX_HOSTNAME_OCTETS) return false;
  let label = 0;
  let nonNumeric = false;
  for (let i = 0; i < n; i++) {
    const c = name.charCodeAt(i);
    if ((c >= 48 && c <= 57) || (c >= 65 && c <= 90) || (c >= 97 && c <= 122) || c === 95) {
      label++;
      if (label > MAX_LABEL_OCTETS) return false;
      if (c > 57) nonNumeric = true;
    } else if (c === 46) {
      if (label === 0 || i === n - 1) return false;
      label = 0;
    } else if (c === 45) {
      nonNumeric = true;
      if (label === 0 || i === n - 1 || name.charCodeAt(i + 1) === 46) return false;
      label++;
      if (label > MAX_LABEL_OCTETS) return false;
    } else {
      return false;
    }
  }
  return nonNumeric;
}

function hasNonAscii(s: string): boolean {
  for (let i = 0; i < s.length; i++) if (s.charCodeAt(i) > 127) return true;
  return false;
}

/**
 * The A-label (ASCII) form of a name, lower case, or `null` when a non-ASCII name is not a valid
 * IDN. ASCII names are only lower-cased.
 */
export function toAsciiName(name: string): string | null {
  if (!hasNonAscii(name)) return name.toLowerCase();
  // Bound the work on a stranger's string before handing it to the IDNA converter.
  if (name.length > MAX_HOSTNAME_OCTETS) return null;
  const ascii = domainToASCII(name);
  return ascii === '' ? null : ascii;
}

/**
 * True when `name` is a syntactically valid host name, by Postfix's valid_hostname() rules (see
 * docs/checks/helo.md). A single trailing dot is NOT stripped here; callers that accept a rooted
 * name strip it first (see `stripRootDot`).
 */
export function isValidHostname(name: string, options: HostnameOptions = {}): boolean {
  if (typeof name !== 'string') return false;
  if (!hasNonAscii(name)) return isAsciiHostname(name);
  if (options.utf8 === false) return false;
  const ascii = toAsciiName(name);
  return ascii !== null && isAsciiHostname(ascii);
}

/**
 * Strips one trailing dot, as Postfix's dup_if_truncate(): `mail.example.com.` is the rooted form
 * of `mail.example.com`, but `example..` keeps its dots (and stays invalid).
 */
export function stripRootDot(name: string): string {
  const n = name.length;
  if (n > 1 && name.charCodeAt(n - 1) === 46 && name.charCodeAt(n - 2) !== 46) return name.slice(0, -1);
  return name;
}

/** A parsed, normalised IP address. */
export interface ParsedIp {
  /** Canonical text: dotted quad, or RFC 5952 compressed IPv6; IPv4-mapped IPv6 becomes IPv4. */
  readonly address: string;
  /** 4 or 6, after IPv4-mapped IPv6 became IPv4. */
  readonly family: 4 | 6;
  /** The ipaddr.js object, for byte, range and CIDR operations. */
  readonly ip: IPv4 | IPv6;
  /** An IPv4 address as an unsigned 32-bit number (network order); absent for IPv6. */
  readonly v4?: number;
}

/**
 * A parsed IPv4 address. The ipaddr.js object is made only when a caller asks for it: most callers
 * need the text and the number, and building the object costs more than parsing.
 */
class ParsedV4 implements ParsedIp {
  readonly family = 4 as const;
  private object: IPv4 | undefined;
  constructor(
    readonly address: string,
    readonly v4: number,
  ) {}
  get ip(): IPv4 {
    this.object ??= new ipaddr.IPv4([
      this.v4 >>> 24,
      (this.v4 >>> 16) & 255,
      (this.v4 >>> 8) & 255,
      this.v4 & 255,
    ]);
    return this.object;
  }
}

function v4Text(n: number): string {
  return `${n >>> 24}.${(n >>> 16) & 255}.${(n >>> 8) & 255}.${n & 255}`;
}

const IPV6_CHARS = /^[0-9A-Fa-f:.]{2,45}$/;

/**
 * Parses a strict dotted quad (four decimal octets of one to three digits, leading zeros read as
 * decimal as RFC 5321's Snum does; no `127.1`, no hex, no octal) to an unsigned 32-bit number, or
 * -1. One pass over the characters, no allocation.
 */
function dottedQuad(s: string): number {
  const n = s.length;
  if (n < 7 || n > 15) return -1;
  let value = 0;
  let octet = 0;
  let digits = 0;
  let dots = 0;
  for (let i = 0; i < n; i++) {
    const c = s.charCodeAt(i);
    if (c >= 48 && c <= 57) {
      if (++digits > 3) return -1;
      octet = octet * 10 + (c - 48);
    } else if (c === 46) {
      if (digits === 0 || octet > 255 || ++dots > 3) return -1;
      value = value * 256 + octet;
      octet = 0;
      digits = 0;
    } else {
      return -1;
    }
  }
  if (digits === 0 || octet > 255 || dots !== 3) return -1;
  return value * 256 + octet;
}

/** A strict dotted quad parsed, or `null` (see {@link dottedQuad}). */
function parseDottedQuad(s: string): ParsedV4 | null {
  const v = dottedQuad(s);
  if (v < 0) return null;
  const text = v4Text(v);
  // Keep the caller's string when it is already canonical (no leading zeros): one string fewer.
  return new ParsedV4(text === s ? s : text, v);
}

/**
 * Parses an IP address as a stranger wrote it: a strict dotted quad or an IPv6 address (no zone
 * index, no brackets). IPv4-mapped IPv6 (`::ffff:192.0.2.1`) is normalised to IPv4, so one client
 * is one address however the socket reported it. `null` when it is not an address.
 */
export function parseIp(s: string): ParsedIp | null {
  if (typeof s !== 'string' || s.length > 45) return null;
  const v4 = parseDottedQuad(s);
  if (v4) return v4;
  if (!IPV6_CHARS.test(s) || !s.includes(':')) return null;
  // One parse: IPv6.parse throws for what isValid would refuse (isValid parses too).
  try {
    const v6 = ipaddr.IPv6.parse(s);
    if (v6.isIPv4MappedAddress()) {
      const o = v6.toIPv4Address().octets;
      const n = (((o[0] ?? 0) << 24) >>> 0) + ((o[1] ?? 0) << 16) + ((o[2] ?? 0) << 8) + (o[3] ?? 0);
      return new ParsedV4(v4Text(n), n);
    }
    return { address: v6.toString(), family: 6, ip: v6 };
  } catch {
    return null;
  }
}

/** Longest text {@link parseClientIp} looks at: a bracketed, tagged IPv6 address with a zone index fits. */
const MAX_CLIENT_IP_TEXT = 64;

/**
 * Parses an address as sockets, logs, configs and address literals write it: surrounding spaces,
 * brackets (`[192.0.2.1]`), an RFC 5321 `IPv6:` tag and a zone index (`fe80::1%eth0`) are dropped,
 * then {@link parseIp} decides (strict dotted quad or IPv6; IPv4-mapped IPv6 becomes IPv4). The one
 * address parser every mxguard package uses for a client address. `null` when it is not an address.
 */
export function parseClientIp(text: string): ParsedIp | null {
  if (typeof text !== 'string' || text.length === 0 || text.length > MAX_CLIENT_IP_TEXT) return null;
  let s = text.trim();
  if (s.startsWith('[') && s.endsWith(']')) s = s.slice(1, -1);
  if (/^ipv6:/i.test(s)) s = s.slice(5);
  const zone = s.indexOf('%');
  if (zone >= 0) s = s.slice(0, zone);
  return parseIp(s);
}

/**
 * The network of a client address in CIDR form (`192.0.2.0/24`, `2001:db8:1:2::/64`): the address
 * masked to `ipv4Prefix` or `ipv6Prefix` bits. Greylisting and reputation key a client by its
 * network, as postgrey's `--ipv4cidr`/`--ipv6cidr` do, because large senders and spam operations
 * rotate addresses inside one. `undefined` when `address` is not an address ({@link parseClientIp});
 * TypeError when a prefix length is out of range (a configuration error).
 */
export function ipNetwork(
  address: string | ParsedIp,
  ipv4Prefix: number,
  ipv6Prefix: number,
): string | undefined {
  if (!Number.isInteger(ipv4Prefix) || ipv4Prefix < 0 || ipv4Prefix > 32)
    throw new TypeError(`ipv4Prefix ${ipv4Prefix} is not in 0..32`);
  if (!Number.isInteger(ipv6Prefix) || ipv6Prefix < 0 || ipv6Prefix > 128)
    throw new TypeError(`ipv6Prefix ${ipv6Prefix} is not in 0..128`);
  const p = typeof address === 'string' ? parseClientIp(address) : address;
  if (!p) return undefined;
  if (p.v4 !== undefined) {
    // IPv4 as a number: two integer operations, no byte array, no address object.
    const n = ipv4Prefix === 0 ? 0 : (p.v4 & ((0xffffffff << (32 - ipv4Prefix)) >>> 0)) >>> 0;
    return `${v4Text(n)}/${ipv4Prefix}`;
  }
  const prefix = p.family === 4 ? ipv4Prefix : ipv6Prefix;
  const bytes = p.ip.toByteArray();
  for (let i = 0; i < bytes.length; i++) {
    const keep = Math.max(0, Math.min(8, prefix - i * 8));
    bytes[i] = (bytes[i] ?? 0) & ((0xff << (8 - keep)) & 0xff);
  }
  return `${ipaddr.fromByteArray(bytes).toString()}/${prefix}`;
}

/** The normalised text of an IP address, or `null` (see {@link parseIp}). */
export function normaliseIp(s: string): string | null {
  return parseIp(s)?.address ?? null;
}

/** What {@link parseHeloLiteral} found in a bracketed HELO argument. */
export type HeloLiteral =
  | {
      /** The literal is an address we accept. */
      readonly valid: true;
      /** The address, canonical (for IPv6: without the `IPv6:` tag). */
      readonly address: string;
      /** IPv4 or IPv6. */
      readonly family: 4 | 6;
    }
  | {
      /** Bracketed, but not a literal we accept. */
      readonly valid: false;
      /** Why, for the reply. */
      readonly reason: string;
    };

/**
 * Parses an RFC 5321 4.1.3 address literal: `[192.0.2.1]` or `[IPv6:2001:db8::1]` (the tag is
 * case-insensitive, as Postfix's valid_mailhost_addr() reads it). Returns `null` when `s` is not
 * bracketed at all (it is a name, or a bare IP), and `{valid: false}` for a bracketed string that is
 * not a literal we accept: `[300.1.1.1]`, `[::1]` without the IPv6 tag, `[IPv6:1.2.3.4]`, general
 * (tagged) literals, which Postfix also refuses ("invalid ip address"). As Postfix's
 * valid_ipv4_hostaddr(), an IPv4 literal whose first octet is 0 is refused unless it is 0.0.0.0.
 */
export function parseHeloLiteral(s: string): HeloLiteral | null {
  if (typeof s !== 'string' || s.length < 2 || s[0] !== '[' || s[s.length - 1] !== ']') return null;
  const inner = s.slice(1, -1);
  if (inner.length === 0) return { valid: false, reason: 'empty address literal' };
  if (/^ipv6:/i.test(inner)) {
    const body = inner.slice(5);
    if (!body.includes(':') || !IPV6_CHARS.test(body))
      return { valid: false, reason: 'invalid IPv6 literal' };
    const p = parseIp(body);
    if (!p) return { valid: false, reason: 'invalid IPv6 literal' };
    // An IPv4-mapped IPv6 literal is still the client's IPv4 address: report it normalised.
    return { valid: true, address: p.address, family: p.family };
  }
  const v4 = parseDottedQuad(inner);
  if (!v4) {
    // `[::1]`: an IPv6 address without the tag Postfix and RFC 5321 4.1.3 require.
    if (inner.includes(':') && parseIp(inner)?.family === 6)
      return { valid: false, reason: 'IPv6 literal without the "IPv6:" tag' };
    return { valid: false, reason: 'invalid IPv4 literal' };
  }
  if (v4.v4 >>> 24 === 0 && v4.v4 !== 0) {
    return { valid: false, reason: 'invalid IPv4 literal (first octet 0)' };
  }
  return { valid: true, address: v4.address, family: 4 };
}

/** A compiled list of networks (addresses and CIDRs) for fast membership tests. */
export interface NetworkList {
  /** The entries as given, for logs. */
  readonly entries: readonly string[];
  /** True when `ip` (any form {@link parseIp} reads, or already parsed) is in one of the networks. */
  has(ip: string | ParsedIp): boolean;
}

/** A network as {@link parseNetwork} reads it: the address and the prefix length. */
export type NetworkRange = [IPv4 | IPv6, number];

/**
 * Parses one address or CIDR of a configuration list. Throws TypeError naming the entry when it is
 * neither, or when a CIDR has host bits set (as Postfix's cidr_table refuses "non-null host address
 * bits": `192.0.2.1/24` is almost always a typo for `/32` or `192.0.2.0/24`).
 */
export function parseNetwork(entry: string, what = 'network list'): NetworkRange {
  const s = entry.trim();
  const slash = s.indexOf('/');
  if (slash < 0) {
    const p = parseIp(s.startsWith('[') && s.endsWith(']') ? s.slice(1, -1) : s);
    if (!p) throw new TypeError(`${what}: "${entry}" is not an IP address or CIDR`);
    return [p.ip, p.family === 4 ? 32 : 128];
  }
  const addr = parseIp(s.slice(0, slash));
  const bitsText = s.slice(slash + 1);
  if (!addr || !/^\d{1,3}$/.test(bitsText)) throw new TypeError(`${what}: "${entry}" is not a CIDR`);
  let bits = Number(bitsText);
  // A v4-mapped v6 CIDR (::ffff:192.0.2.0/120) is normalised with its address to IPv4.
  const givenV6 = s.slice(0, slash).includes(':');
  if (givenV6 && addr.family === 4) bits -= 96;
  const max = addr.family === 4 ? 32 : 128;
  if (bits < 0 || bits > max) throw new TypeError(`${what}: "${entry}" has a prefix length out of range`);
  const network =
    addr.family === 4
      ? ipaddr.IPv4.networkAddressFromCIDR(`${addr.address}/${bits}`)
      : ipaddr.IPv6.networkAddressFromCIDR(`${addr.address}/${bits}`);
  if (network.toString() !== addr.address) {
    throw new TypeError(
      `${what}: "${entry}" has host bits set (did you mean ${network.toString()}/${bits}?)`,
    );
  }
  return [addr.ip, bits];
}

/** Compiles a list of addresses and CIDRs once (throws TypeError on a bad entry). */
export function compileNetworks(entries: readonly string[], what = 'network list'): NetworkList {
  // IPv4 networks as (network, mask) numbers: a membership test is two integer operations.
  const v4: { net: number; mask: number }[] = [];
  const v6: NetworkRange[] = [];
  for (const e of entries) {
    const r = parseNetwork(e, what);
    if (r[0].kind() === 'ipv4') v4.push(v4Mask(r[0] as IPv4, r[1]));
    else {
      v6.push(r);
      // The IPv4 addresses an IPv6 network holds (as IPv4-mapped, ::ffff:a.b.c.d), as an IPv4
      // network too, so an IPv4 client is tested with integers only (::/0 holds them all).
      const mapped = mappedV4(r[0] as IPv6, r[1]);
      if (mapped) v4.push(mapped);
    }
  }
  return {
    entries: [...entries],
    has(ip: string | ParsedIp): boolean {
      const p = typeof ip === 'string' ? parseIp(ip) : ip;
      if (!p) return false;
      if (p.v4 !== undefined) {
        const a = p.v4;
        for (const r of v4) if ((a & r.mask) >>> 0 === r.net) return true;
        return false;
      }
      const a = p.ip as IPv6;
      for (const r of v6) if (a.match(r as [IPv6, number])) return true;
      return false;
    },
  };
}

const MAPPED_PREFIX = ipaddr.IPv6.parse('::ffff:0:0');

/**
 * The IPv4 addresses of an IPv6 network, as an IPv4 network: those whose IPv4-mapped form
 * (`::ffff:a.b.c.d`) is in it. Undefined when it holds none.
 */
function mappedV4(address: IPv6, bits: number): { net: number; mask: number } | undefined {
  // A prefix of 96 bits or less holds every mapped address or none.
  if (bits <= 96) return MAPPED_PREFIX.match(address, bits) ? { net: 0, mask: 0 } : undefined;
  if (!address.match(MAPPED_PREFIX, 96)) return undefined;
  return v4Mask(address.toIPv4Address(), bits - 96);
}

/** An IPv4 network as numbers, for `(address & mask) === net`. */
export function v4Mask(
  address: IPv4,
  bits: number,
): {
  /** The network's address as an unsigned 32-bit number. */
  net: number;
  /** The netmask as an unsigned 32-bit number. */
  mask: number;
} {
  const o = address.octets;
  const n = (((o[0] ?? 0) << 24) | ((o[1] ?? 0) << 16) | ((o[2] ?? 0) << 8) | (o[3] ?? 0)) >>> 0;
  const mask = bits === 0 ? 0 : (0xffffffff << (32 - bits)) >>> 0;
  return { net: (n & mask) >>> 0, mask };
}

/**
 * True when `ip` is in one of `cidrs` (addresses or CIDRs, IPv4 or IPv6; IPv4-mapped IPv6 on either
 * side is matched as IPv4). A client address that is not an IP is in no network. A bad entry in
 * `cidrs` is a configuration error: TypeError. For repeated tests compile once with
 * {@link compileNetworks}.
 */
export function inNetworks(ip: string, cidrs: readonly string[] | NetworkList): boolean {
  const list = Array.isArray(cidrs) ? compileNetworks(cidrs as readonly string[]) : (cidrs as NetworkList);
  return list.has(ip);
}

/**
 * A name normalised for comparison: trimmed of one root dot, lower case, A-labels for IDNs.
 * `null` when it cannot be a name.
 */
export function normaliseName(name: string): string | null {
  if (typeof name !== 'string' || name.length === 0 || name.length > 1024) return null;
  return toAsciiName(stripRootDot(name));
}

/** True when `name` is `domain` or a subdomain of it (both normalised, lower case). */
export function isSameOrSubdomain(name: string, domain: string): boolean {
  return name === domain || (name.length > domain.length && name.endsWith(`.${domain}`));
}

/**
 * The number of octets of `s` in UTF-8, without allocating: RFC 5321's limits are in octets, and
 * SMTPUTF8 addresses carry multi-octet characters.
 */
export function utf8Length(s: string): number {
  let n = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x80) n += 1;
    else if (c < 0x800) n += 2;
    else if (c >= 0xd800 && c <= 0xdbff && i + 1 < s.length) {
      const d = s.charCodeAt(i + 1);
      if (d >= 0xdc00 && d <= 0xdfff) {
        n += 4;
        i++;
      } else n += 3;
    } else n += 3;
  }
  return n;
}

/** @internal Reads the options every configurable check shares, failing loudly on a typo. */
export function commonOptions(
  check: string,
  options: Readonly<Record<string, unknown>> | undefined,
  defaults: { action: HitAction; score: number },
  extraKeys: readonly string[] = [],
): { action: HitAction; score: number } {
  const o = options ?? {};
  if (typeof o !== 'object' || o === null || Array.isArray(o)) {
    throw new TypeError(`${check}: options must be an object`);
  }
  for (const k of Object.keys(o)) {
    if (k !== 'action' && k !== 'score' && !extraKeys.includes(k)) {
      throw new TypeError(`${check}: unknown option "${k}"`);
    }
  }
  const action = o.action ?? defaults.action;
  if (typeof action !== 'string' || !HIT_ACTIONS.includes(action as HitAction)) {
    throw new TypeError(`${check}: action must be one of ${HIT_ACTIONS.join(', ')}, got ${String(action)}`);
  }
  const score = o.score ?? defaults.score;
  if (typeof score !== 'number' || !Number.isFinite(score)) {
    throw new TypeError(`${check}: score must be a finite number`);
  }
  return { action: action as HitAction, score };
}
