/**
 * Envelope address checks: RFC 5321 syntax and limits (with SMTPUTF8), Postfix's
 * reject_non_fqdn_sender / reject_non_fqdn_recipient, and our domains forged from outside.
 * See docs/checks/address.md.
 */
import type { Check } from '../model.js';
import type { HitAction } from '../reply.js';
import { hit, next, reply } from '../reply.js';
import type { Site } from '../site.js';
import {
  commonOptions,
  isSameOrSubdomain,
  isValidHostname,
  normaliseName,
  parseHeloLiteral,
  stripRootDot,
  utf8Length,
} from './names.js';
import { clientTrust, oneLine } from './relay.js';

/**
 * RFC 5321 4.5.3.1.1: the maximum total length of a local part is 64 octets. Not enforced by
 * default (see {@link DEFAULT_MAX_LOCAL_PART_OCTETS}); `maxLocalPart: 64` asks for it.
 */
export const MAX_LOCAL_PART_OCTETS = 64;
/** RFC 5321 4.5.3.1.2: the maximum total length of a domain is 255 octets. */
export const MAX_DOMAIN_OCTETS = 255;
/** RFC 5321 4.5.3.1.3: a path, angle brackets included, is at most 256 octets: 254 for the address. */
export const MAX_ADDRESS_OCTETS = 254;
/**
 * The local-part limit applied by default: none beyond the path limit (254 octets for the whole
 * address). RFC 5321 4.5.3.1 lets a server accept objects longer than its minimum maximums ("To
 * the maximum extent possible, implementation techniques that impose no limits on the length of
 * these objects should be used") and Postfix enforces no local-part limit; VERP, SRS and BATV
 * return paths (`list-return-67-user=example.org@lists.example.com`, `SRS0=HHH=TT=orig.example=
 * user@fwd.example`) routinely exceed 64 octets. The path limit stays as the hard bound on what a
 * stranger can make us parse and store.
 */
export const DEFAULT_MAX_LOCAL_PART_OCTETS = MAX_ADDRESS_OCTETS;
/** The result of {@link parseAddress}: never thrown, always one of these. */
export type ParsedAddress =
  | {
      /** The address parses. */
      readonly ok: true;
      /** The local part as written (quotes kept; case kept: local parts are case-sensitive). */
      readonly local: string;
      /** The domain, lower case, one root dot removed; an address literal keeps its brackets. */
      readonly domain: string;
      /** True when the domain is an address literal (`user@[192.0.2.1]`). */
      readonly literal: boolean;
      /** True when the local part is a quoted string. */
      readonly quoted: boolean;
      /** An RFC 5321 source route (`@a,@b`) that preceded the mailbox; to be ignored (4.1.2). */
      readonly route?: string;
    }
  | {
      /** The address does not parse. */
      readonly ok: false;
      /** What is wrong with it, for the reply. */
      readonly reason: string;
    };

/** Limits for {@link parseAddress}, in octets. */
export interface AddressLimits {
  /**
   * Longest local part, in octets. RFC 5321 4.5.3.1.1's 64 is a minimum servers must support,
   * not a limit they must enforce; see {@link DEFAULT_MAX_LOCAL_PART_OCTETS}.
   * @default 254 (only the path limit)
   */
  readonly maxLocalPart?: number;
}

// atext of RFC 5322 3.2.3 as RFC 5321's Atom uses it; RFC 6531 adds UTF8-non-ascii, checked apart.
const ATEXT = new Uint8Array(128);
for (const c of "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789!#$%&'*+-/=?^_`{|}~") {
  ATEXT[c.charCodeAt(0)] = 1;
}

const LONE_SURROGATE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;

function fail(reason: string): ParsedAddress {
  return { ok: false, reason };
}

/**
 * Parses an envelope address (without angle brackets) by RFC 5321 4.1.2, extended by RFC 6531 for
 * UTF-8 (SMTPUTF8) local parts and domains: `Local-part "@" ( Domain / address-literal )`, where the
 * local part is a dot-string or a quoted string, plus the limits of 4.5.3.1 that bound our work
 * (domain 255 octets, path 256; a local part only within the path unless `maxLocalPart` says less). A leading source route (`@relay:user@example.com`) is accepted and reported,
 * as servers must accept and ignore it. One trailing dot on the domain is tolerated, as Postfix
 * does. The null sender `''` and a bare `postmaster` are not addresses: callers handle them.
 * Never throws.
 */
export function parseAddress(s: string, limits: AddressLimits = {}): ParsedAddress {
  if (typeof s !== 'string') return fail('not a string');
  if (s.length === 0) return fail('empty');
  // Cheap bound first: a string of more than 254 UTF-16 units has more than 254 octets.
  if (s.length > MAX_ADDRESS_OCTETS) return fail('address longer than 254 octets');
  if (utf8Length(s) > MAX_ADDRESS_OCTETS) return fail('address longer than 254 octets');
  if (LONE_SURROGATE.test(s)) return fail('not valid UTF-8');
  let rest = s;
  let route: string | undefined;
  if (rest.charCodeAt(0) === 64 /* @ */) {
    const colon = rest.indexOf(':');
    if (colon < 0) return fail('source route without ":"');
    route = rest.slice(0, colon);
    for (const hop of route.split(',')) {
      if (hop.length < 2 || hop[0] !== '@') return fail('bad source route');
      const d = hop.slice(1);
      if (!(isValidHostname(stripRootDot(d)) || parseHeloLiteral(d)?.valid)) return fail('bad source route');
    }
    rest = rest.slice(colon + 1);
  }
  let i = 0;
  const n = rest.length;
  let quoted = false;
  if (rest.charCodeAt(0) === 34 /* " */) {
    quoted = true;
    i = 1;
    let closed = false;
    while (i < n) {
      const c = rest.charCodeAt(i);
      if (c === 92 /* \ */) {
        const d = rest.charCodeAt(i + 1);
        // quoted-pairSMTP = %d92 %d32-126
        if (!(d >= 32 && d <= 126)) return fail('bad quoted pair in local part');
        i += 2;
        continue;
      }
      if (c === 34) {
        closed = true;
        i++;
        break;
      }
      // qtextSMTP = %d32-33 / %d35-91 / %d93-126, plus UTF8-non-ascii (RFC 6531)
      if (!((c >= 32 && c <= 126) || c > 127)) return fail('control character in quoted local part');
      i++;
    }
    if (!closed) return fail('unterminated quoted local part');
    if (rest.charCodeAt(i) !== 64) return fail('text after quoted local part');
  } else {
    let atomLen = 0;
    while (i < n) {
      const c = rest.charCodeAt(i);
      if (c === 64) break;
      if (c === 46 /* . */) {
        if (atomLen === 0) return fail('empty atom in local part');
        atomLen = 0;
      } else if ((c < 128 && ATEXT[c] === 1) || (c > 127 && !isBadUnicode(c))) {
        atomLen++;
      } else {
        return fail(
          c < 32 || c === 127 ? 'control character in local part' : 'invalid character in local part',
        );
      }
      i++;
    }
    if (i === 0) return fail('empty local part');
    if (atomLen === 0) return fail('local part ends with a dot');
  }
  if (i >= n || rest.charCodeAt(i) !== 64) return fail('no domain');
  const local = rest.slice(0, i);
  const maxLocal = limits.maxLocalPart ?? DEFAULT_MAX_LOCAL_PART_OCTETS;
  if (utf8Length(local) > maxLocal) return fail(`local part longer than ${maxLocal} octets`);
  const rawDomain = rest.slice(i + 1);
  if (rawDomain.length === 0) return fail('empty domain');
  if (rawDomain.charCodeAt(0) === 91 /* [ */) {
    const lit = parseHeloLiteral(rawDomain);
    if (!lit?.valid) return fail('invalid address literal');
    return { ok: true, local, domain: rawDomain, literal: true, quoted, ...(route ? { route } : {}) };
  }
  if (rawDomain.includes('@')) return fail('more than one "@"');
  const domain = stripRootDot(rawDomain);
  if (utf8Length(domain) > MAX_DOMAIN_OCTETS) return fail('domain longer than 255 octets');
  if (!isValidHostname(domain)) return fail('invalid domain');
  return {
    ok: true,
    local,
    domain: domain.toLowerCase(),
    literal: false,
    quoted,
    ...(route ? { route } : {}),
  };
}

/** Unicode that has no place in an address: C1 controls, lone surrogates handled by the IDNA step. */
function isBadUnicode(c: number): boolean {
  return c >= 0x80 && c <= 0x9f;
}

/** True for RFC 5321 4.1.1.3's `postmaster` without a domain, which a server must accept. */
export function isBarePostmaster(s: string): boolean {
  return s.length === 10 && s.toLowerCase() === 'postmaster';
}

/** An address for a reply or log line: one line, at most 256 characters shown. */
export function showAddress(a: string): string {
  return oneLine(a.length > 256 ? `${a.slice(0, 253)}...` : a);
}

/** Options of the address checks. */
export interface AddressCheckOptions {
  /** What the check does when it fires. @default 'reject' */
  readonly action?: HitAction;
  /** Points for `weigh()` with `score` or `greylist`. @default 1 */
  readonly score?: number;
}

/** Options of {@link senderSyntax} and {@link recipientSyntax}. */
export interface AddressSyntaxOptions extends AddressCheckOptions {
  /**
   * Longest local part accepted, in octets. RFC 5321 4.5.3.1.1 names 64 as the least a server
   * must support, and 4.5.3.1 lets it accept more; Postfix enforces no limit. VERP, SRS and BATV
   * return paths of mailing lists and forwarders routinely exceed 64, so by default only the path
   * limit applies (254 octets for the address). `64` gives the strict RFC minimum.
   * @default 254
   */
  readonly maxLocalPart?: number;
}

function limitsOf(check: string, o: AddressSyntaxOptions): AddressLimits {
  const m = o.maxLocalPart ?? DEFAULT_MAX_LOCAL_PART_OCTETS;
  if (typeof m !== 'number' || !Number.isInteger(m) || m < 1 || m > MAX_ADDRESS_OCTETS) {
    throw new TypeError(`${check}: maxLocalPart must be an integer from 1 to ${MAX_ADDRESS_OCTETS}`);
  }
  return { maxLocalPart: m };
}

/**
 * `sender-syntax` (stage mail): MAIL FROM must parse by {@link parseAddress}, else 501 5.1.7 "Bad
 * sender address syntax" (Postfix smtpd's reply). The null sender passes. Default action `reject`.
 */
export function senderSyntax(options: AddressSyntaxOptions = {}): Check {
  const name = 'sender-syntax';
  const { action, score } = commonOptions(
    name,
    options as Record<string, unknown>,
    { action: 'reject', score: 1 },
    ['maxLocalPart'],
  );
  const limits = limitsOf(name, options);
  return {
    name,
    stage: 'mail',
    run(session) {
      const from = session.mailFrom;
      if (typeof from !== 'string' || from === '') return next();
      const p = parseAddress(from, limits);
      if (p.ok) return next();
      return hit(
        name,
        action,
        reply(501, '5.1.7', 'Bad sender address syntax'),
        `sender: ${p.reason}`,
        'bad-syntax',
        score,
      );
    },
  };
}

/**
 * `recipient-syntax` (stage rcpt): RCPT TO must parse by {@link parseAddress}, else 501 5.1.3 "Bad
 * recipient address syntax" (Postfix smtpd's reply). A bare `postmaster` passes (RFC 5321
 * 4.1.1.3); an empty recipient does not. A missing recipient: next. Default action `reject`.
 */
export function recipientSyntax(options: AddressSyntaxOptions = {}): Check {
  const name = 'recipient-syntax';
  const { action, score } = commonOptions(
    name,
    options as Record<string, unknown>,
    { action: 'reject', score: 1 },
    ['maxLocalPart'],
  );
  const limits = limitsOf(name, options);
  return {
    name,
    stage: 'rcpt',
    run(session) {
      const to = session.rcptTo;
      if (typeof to !== 'string') return next('no recipient');
      if (isBarePostmaster(to)) return next('postmaster');
      const p = parseAddress(to, limits);
      if (p.ok) return next();
      return hit(
        name,
        action,
        reply(501, '5.1.3', 'Bad recipient address syntax'),
        `recipient: ${p.reason}`,
        'bad-syntax',
        score,
      );
    },
  };
}

/**
 * True when the domain of `addr` (after the last "@", as Postfix's strrchr) is a fully-qualified
 * host name: valid by valid_hostname() (UTF-8 allowed) with at least one dot, after one root dot is
 * stripped. An address-literal domain counts as qualified (Postfix skips it).
 */
export function hasFqdnDomain(addr: string): boolean {
  const at = addr.lastIndexOf('@');
  const domain = at < 0 ? '' : addr.slice(at + 1);
  if (domain.length > 1 && domain[0] === '[' && domain[domain.length - 1] === ']') return true;
  const d = stripRootDot(domain);
  return d.length > 0 && d.includes('.') && isValidHostname(d);
}

function fqdnCheck(
  name: 'sender-fqdn' | 'recipient-fqdn',
  options: AddressCheckOptions,
  pick: (s: { mailFrom?: string; rcptTo?: string }) => string | undefined,
  cls: 'Sender' | 'Recipient',
): Check {
  const { action, score } = commonOptions(name, options as Record<string, unknown>, {
    action: 'reject',
    score: 1,
  });
  return {
    name,
    stage: cls === 'Sender' ? 'mail' : 'rcpt',
    run(session) {
      const addr = pick(session);
      if (typeof addr !== 'string') return next();
      if (cls === 'Sender' && addr === '') return next('null sender');
      if (cls === 'Recipient' && isBarePostmaster(addr)) return next('postmaster');
      if (hasFqdnDomain(addr)) return next();
      return hit(
        name,
        action,
        reply(504, '5.5.2', `<${showAddress(addr)}>: ${cls} address rejected: need fully-qualified address`),
        `${cls.toLowerCase()} domain is not fully qualified`,
        'non-fqdn',
        score,
      );
    },
  };
}

/**
 * `sender-fqdn` (stage mail), as Postfix's `reject_non_fqdn_sender`: a MAIL FROM whose domain is
 * missing or not a fully-qualified host name gets 504 5.5.2 "<addr>: Sender address rejected: need
 * fully-qualified address". The null sender passes; an address-literal domain passes. Default
 * action `reject`.
 */
export function senderFqdn(options: AddressCheckOptions = {}): Check {
  return fqdnCheck('sender-fqdn', options, (s) => s.mailFrom, 'Sender');
}

/**
 * `recipient-fqdn` (stage rcpt), as Postfix's `reject_non_fqdn_recipient`: 504 5.5.2 "<addr>:
 * Recipient address rejected: need fully-qualified address". A bare `postmaster` passes (RFC 5321
 * 4.1.1.3, as Postfix). Default action `reject`.
 */
export function recipientFqdn(options: AddressCheckOptions = {}): Check {
  return fqdnCheck('recipient-fqdn', options, (s) => s.rcptTo, 'Recipient');
}

/**
 * `sender-forged-ours` (stage mail): a MAIL FROM in one of our domains (or a subdomain) from a
 * client that is not in ourNetworks, not authenticated, not one of our addresses and not a trusted
 * forwarder: 553 5.7.1 "<addr>: Sender address rejected: not logged in", Postfix's reply for
 * reject_unauthenticated_sender_login_mismatch. The null sender passes. Default action `reject`.
 */
export function senderForgedOurs(options: AddressCheckOptions = {}, site: Site): Check {
  const name = 'sender-forged-ours';
  const { action, score } = commonOptions(name, options as Record<string, unknown>, {
    action: 'reject',
    score: 1,
  });
  const trust = clientTrust(site);
  const domains = site.ourDomains.map((d) => normaliseName(d) ?? d.toLowerCase());
  return {
    name,
    stage: 'mail',
    run(session) {
      const from = session.mailFrom;
      if (typeof from !== 'string' || from === '') return next();
      const at = from.lastIndexOf('@');
      if (at < 0) return next();
      const domain = normaliseName(from.slice(at + 1));
      if (domain === null) return next();
      const ours = domains.find((d) => isSameOrSubdomain(domain, d));
      if (ours === undefined) return next();
      if (trust.isPrivileged(session) || trust.isOurAddress(session) || trust.isTrustedForwarder(session)) {
        return next('client may send as us');
      }
      return hit(
        name,
        action,
        reply(553, '5.7.1', `<${showAddress(from)}>: Sender address rejected: not logged in`),
        `sender in our domain ${ours} from an outside client`,
        'forged-ours',
        score,
      );
    },
  };
}
