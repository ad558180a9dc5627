/**
 * HELO/EHLO checks, after Postfix's smtpd_helo_required and smtpd_helo_restrictions. Pure: the
 * HELO argument and the client address are all they read. See docs/checks/helo.md.
 */
import { clientIp } from '../memo.js';
import type { Check, Session } from '../model.js';
import type { HitAction } from '../reply.js';
import { hit, next, reply } from '../reply.js';
import type { Site } from '../site.js';
import {
  commonOptions,
  isValidHostname,
  normaliseIp,
  normaliseName,
  parseHeloLiteral,
  parseIp,
  stripRootDot,
} from './names.js';
import { clientTrust, oneLine } from './relay.js';

/** Options every HELO check takes. */
export interface HeloCheckOptions {
  /** What the check does when it fires; each check documents its default. */
  readonly action?: HitAction;
  /** Points for `weigh()` with `score` or `greylist`. @default 1 (helo-literal-mismatch: 2) */
  readonly score?: number;
}

/** A stranger's HELO for a reply or a log line: one line, at most 100 characters shown. */
export function showHelo(helo: string): string {
  return oneLine(helo.length > 100 ? `${helo.slice(0, 100)}...` : helo);
}

function heloOf(session: Session): string | undefined {
  const h = session.helo;
  return typeof h === 'string' && h.length > 0 ? h : undefined;
}

/** The HELO parsed once: a literal, a bare IP, or a name. */
type HeloForm =
  | { kind: 'literal'; valid: true; address: string }
  | { kind: 'literal'; valid: false; reason: string }
  | { kind: 'ip'; address: string }
  | { kind: 'name'; name: string };

function heloForm(helo: string): HeloForm {
  const lit = parseHeloLiteral(helo);
  if (lit)
    return lit.valid
      ? { kind: 'literal', valid: true, address: lit.address }
      : { kind: 'literal', valid: false, reason: lit.reason };
  // One root dot is stripped first, as Postfix's dup_if_truncate(): `192.0.2.1.` is still a bare IP.
  const name = stripRootDot(helo);
  const ip = parseIp(name);
  if (ip) return { kind: 'ip', address: ip.address };
  return { kind: 'name', name };
}

/**
 * `helo-required` (stage mail), as Postfix's `smtpd_helo_required = yes`: a client that says MAIL
 * FROM without HELO/EHLO gets 503 5.5.1 "Error: send HELO/EHLO first". Default action `reject`.
 */
export function heloRequired(options: HeloCheckOptions = {}): Check {
  const name = 'helo-required';
  const { action, score } = commonOptions(name, options as Record<string, unknown>, {
    action: 'reject',
    score: 1,
  });
  return {
    name,
    stage: 'mail',
    run(session) {
      if (heloOf(session)?.trim()) return next();
      return hit(
        name,
        action,
        reply(503, '5.5.1', 'Error: send HELO/EHLO first'),
        'no HELO/EHLO',
        'no-helo',
        score,
      );
    },
  };
}

/**
 * A malformed address literal (`[999.1.1.1]`, `[IPv6:zz]`), as Postfix's reject_invalid_hostaddr
 * answers it in both reject_invalid_helo_hostname and reject_non_fqdn_helo_hostname.
 */
function invalidLiteral(name: string, action: HitAction, score: number, helo: string, why: string) {
  return hit(
    name,
    action,
    reply(501, '5.5.2', `<${showHelo(helo)}>: Helo command rejected: invalid ip address`),
    `HELO ${why}`,
    'invalid-literal',
    score,
  );
}

/** Options of {@link heloSyntax}. */
export interface HeloSyntaxOptions extends HeloCheckOptions {
  /**
   * Accept UTF-8 (U-label) names that convert to valid A-label names. Postfix 3.7 refuses them (501
   * "Invalid name", even with `smtputf8_enable = yes`, measured in packages/postfix/test); a valid
   * IDN proves nothing false, so mxguard passes it by default. `false` matches Postfix.
   * @default true
   */
  readonly utf8?: boolean;
}

/**
 * `helo-syntax` (stage helo), as Postfix's `reject_invalid_helo_hostname`:
 * - a name must pass valid_hostname(): at most 255 octets, labels of 1-63 letters, digits, `-`
 *   (not first or last) or `_`, and not all-numeric (`12345`, `1.2.3`); one trailing dot is allowed;
 *   else 501 5.5.2 "<helo>: Helo command rejected: Invalid name";
 * - a bracketed literal must be `[IPv4]` or `[IPv6:...]`; else 501 5.5.2 "<helo>: Helo command
 *   rejected: invalid ip address" (Postfix's reject_invalid_hostaddr);
 * - a bare IP address passes, as in Postfix ("XXX back compat"): `helo-bare-ip` judges it; but a
 *   dotted quad with a first octet of 0 (`0.255.255.255`, not `0.0.0.0`) is an "Invalid name", as
 *   Postfix's valid_ipv4_hostaddr() finds ("bad initial octet value");
 * - a U-label name (`bücher.example`) passes when it converts to a valid A-label name: a deliberate
 *   difference, as Postfix 3.7 refuses it (501 "Invalid name", measured); `utf8: false` matches it.
 * A missing HELO: next (`helo-required` judges it). Default action `reject`.
 */
export function heloSyntax(options: HeloSyntaxOptions = {}): Check {
  const name = 'helo-syntax';
  const { action, score } = commonOptions(
    name,
    options as Record<string, unknown>,
    { action: 'reject', score: 1 },
    ['utf8'],
  );
  const utf8 = bool(name, 'utf8', options.utf8, true);
  return {
    name,
    stage: 'helo',
    run(session) {
      const helo = heloOf(session);
      if (helo === undefined) return next('no HELO');
      const f = heloForm(helo);
      if (f.kind === 'literal') return f.valid ? next() : invalidLiteral(name, action, score, helo, f.reason);
      if (f.kind === 'ip' && !badInitialOctet(helo)) return next();
      if (f.kind === 'name' && isValidHostname(f.name, { utf8 })) return next();
      return hit(
        name,
        action,
        reply(501, '5.5.2', `<${showHelo(helo)}>: Helo command rejected: Invalid name`),
        f.kind === 'ip' ? 'HELO is a dotted quad with a first octet of 0' : 'HELO is not a valid host name',
        'invalid-name',
        score,
      );
    },
  };
}

/**
 * A bare dotted quad whose first octet is 0 but that is not 0.0.0.0 (`0.255.255.255`): Postfix's
 * valid_ipv4_hostaddr() refuses it ("bad initial octet value"), and valid_hostname() refuses an
 * all-numeric name, so reject_invalid_helo_hostname answers "Invalid name" (measured against
 * Postfix 3.7 in packages/postfix/test/postfix.test.ts, `::ffff:0.1.2.3` too). 0.0.0.0 passes.
 */
function badInitialOctet(helo: string): boolean {
  const name = stripRootDot(helo);
  if (parseIp(name) === null) return false;
  // The dotted quad alone or at the end of an IPv6 form (`::ffff:0.1.2.3`): Postfix's
  // valid_ipv6_hostaddr() hands that tail to valid_ipv4_hostaddr() too.
  const quad = parseIp(name.slice(name.lastIndexOf(':') + 1));
  return quad !== null && quad.family === 4 && quad.address.startsWith('0.') && quad.address !== '0.0.0.0';
}

/** Options of {@link heloFqdn}. */
export interface HeloFqdnOptions extends HeloCheckOptions {
  /**
   * What a bare IP (`HELO 192.0.2.1`) does here. `pass` leaves it to `helo-bare-ip`, which owns
   * that case; `fail` rejects it here too, as Postfix's reject_non_fqdn_helo_hostname does (for a
   * chain without `helo-bare-ip`).
   * @default 'pass'
   */
  readonly bareIp?: 'pass' | 'fail';
  /** Accept UTF-8 (U-label) names. @default true */
  readonly utf8?: boolean;
}

/**
 * `helo-fqdn` (stage helo), as Postfix's `reject_non_fqdn_helo_hostname`: a name that is not a
 * valid host name with at least one dot gets 504 5.5.2 "<helo>: Helo command rejected: need
 * fully-qualified hostname". One trailing dot is stripped first, as Postfix does: `mx.example.com.`
 * passes, `localhost.` does not. An all-numeric name (`12345`, `1.2.3`) fails. A valid address
 * literal passes; an invalid one gets 501 5.5.2 "invalid ip address" (Postfix checks literals here
 * too). Missing HELO: next.
 *
 * Default action `greylist`, not Postfix's reject: a single-label HELO (`HELO tater`, `HELO nas1`)
 * is what small honest servers and appliances send, and it proves no abuse (DESIGN principles 1
 * and 6). The doubt sends the client to the selective greylist: a real MTA retries and gets
 * through, a spam engine that does not retry does not; a network that keeps doing it escalates
 * through `reputation`. `action: 'reject'` gives Postfix's 504 (docs/checks/helo.md).
 */
export function heloFqdn(options: HeloFqdnOptions = {}): Check {
  const name = 'helo-fqdn';
  const { action, score } = commonOptions(
    name,
    options as Record<string, unknown>,
    { action: 'greylist', score: 1 },
    ['bareIp', 'utf8'],
  );
  const bareIp = options.bareIp ?? 'pass';
  if (bareIp !== 'pass' && bareIp !== 'fail') throw new TypeError(`${name}: bareIp must be "pass" or "fail"`);
  const utf8 = bool(name, 'utf8', options.utf8, true);
  const nonFqdn = (helo: string, why: string, tag: string) =>
    hit(
      name,
      action,
      reply(504, '5.5.2', `<${showHelo(helo)}>: Helo command rejected: need fully-qualified hostname`),
      why,
      tag,
      score,
    );
  return {
    name,
    stage: 'helo',
    run(session) {
      const helo = heloOf(session);
      if (helo === undefined) return next('no HELO');
      const f = heloForm(helo);
      if (f.kind === 'literal') return f.valid ? next() : invalidLiteral(name, action, score, helo, f.reason);
      if (f.kind === 'ip')
        return bareIp === 'fail' ? nonFqdn(helo, 'HELO is a bare IP address', 'bare-ip') : next();
      if (!isValidHostname(f.name, { utf8 }))
        return nonFqdn(helo, 'HELO is not a valid host name', 'invalid-name');
      if (!f.name.includes('.')) return nonFqdn(helo, 'HELO has no dot', 'no-dot');
      return next();
    },
  };
}

const LOCAL_NAMES = ['localhost', 'localhost.localdomain'];

/**
 * `helo-claims-us` (stage helo): the HELO is one of our host names (`site.ourHosts`), one of our
 * domains (`site.ourDomains`, exact), `localhost`/`localhost.localdomain`, or an address literal or
 * bare IP of ours (`site.ourAddresses`, or loopback), from a client that is not in ourNetworks, not
 * authenticated and not one of our own addresses: 550 5.7.1 "<helo>: Helo command rejected: You are
 * not me". This is information proven false, so the default action is `reject`.
 */
export function heloClaimsUs(options: HeloCheckOptions = {}, site: Site): Check {
  const name = 'helo-claims-us';
  const { action, score } = commonOptions(name, options as Record<string, unknown>, {
    action: 'reject',
    score: 1,
  });
  const trust = clientTrust(site);
  const names = new Set<string>(LOCAL_NAMES);
  for (const n of [...site.ourHosts, ...site.ourDomains]) names.add(normaliseName(n) ?? n.toLowerCase());
  const addresses = new Set<string>();
  for (const a of site.ourAddresses) {
    const n = normaliseIp(a);
    if (n) addresses.add(n);
  }
  const ours = (address: string) => addresses.has(address) || isLoopback(address);
  return {
    name,
    stage: 'helo',
    run(session) {
      const helo = heloOf(session);
      if (helo === undefined) return next('no HELO');
      if (trust.isPrivileged(session) || trust.isOurAddress(session)) return next('client may speak for us');
      const f = heloForm(helo);
      let claim: string | undefined;
      if (f.kind === 'literal' && f.valid && ours(f.address)) claim = `our address ${f.address}`;
      else if (f.kind === 'ip' && ours(f.address)) claim = `our address ${f.address}`;
      else if (f.kind === 'name') {
        const n = normaliseName(f.name);
        if (n !== null && names.has(n)) claim = `our name ${n}`;
      }
      if (claim === undefined) return next();
      return hit(
        name,
        action,
        reply(550, '5.7.1', `<${showHelo(helo)}>: Helo command rejected: You are not me`),
        `HELO claims ${claim} from ${showHelo(session.clientAddress)}`,
        'claims-us',
        score,
      );
    },
  };
}

function isLoopback(address: string): boolean {
  return address.startsWith('127.') || address === '::1';
}

/**
 * `helo-literal-mismatch` (stage helo): a valid address literal that is not the client's address.
 * RFC 5321 4.1.4 says a server MUST NOT refuse a message because the HELO does not match the
 * client (NAT puts private addresses in honest literals), so this is a doubt: default action
 * `greylist` with score 2. Configurable (reject gives 550 5.7.1, defer 450 4.7.1). Clients in
 * ourNetworks or authenticated are not judged.
 */
export function heloLiteralMismatch(options: HeloCheckOptions = {}, site: Site): Check {
  const name = 'helo-literal-mismatch';
  const { action, score } = commonOptions(name, options as Record<string, unknown>, {
    action: 'greylist',
    score: 2,
  });
  const trust = clientTrust(site);
  return {
    name,
    stage: 'helo',
    run(session) {
      const helo = heloOf(session);
      if (helo === undefined) return next('no HELO');
      const lit = parseHeloLiteral(helo);
      if (!lit?.valid) return next();
      const client = clientIp(session)?.address;
      if (client === undefined || client === lit.address) return next();
      if (trust.isPrivileged(session)) return next('client may relay');
      return hit(
        name,
        action,
        reply(
          550,
          '5.7.1',
          `<${showHelo(helo)}>: Helo command rejected: address literal is not your address`,
        ),
        `HELO literal ${lit.address} is not the client address ${client}`,
        'literal-mismatch',
        score,
      );
    },
  };
}

/**
 * `helo-bare-ip` (stage helo): an IP address without brackets (`HELO 192.0.2.1`). RFC 5321 4.1.1.1
 * allows a domain or an address literal, so this is invalid syntax, proven. Postfix's
 * reject_invalid_helo_hostname lets it pass ("XXX back compat"), but reject_non_fqdn_helo_hostname
 * rejects it with 504 5.5.2 "need fully-qualified hostname" (valid_hostname() refuses all-numeric
 * names); this check gives that reply when its action is `reject`.
 *
 * Default action `greylist`: NAS boxes, printers and home routers that deliver directly HELO with
 * their LAN address. The error proves a misconfiguration, not abuse, so the client is delayed by
 * the selective greylist rather than refused (principle 6); `action: 'reject'` is Postfix's answer.
 */
export function heloBareIp(options: HeloCheckOptions = {}): Check {
  const name = 'helo-bare-ip';
  const { action, score } = commonOptions(name, options as Record<string, unknown>, {
    action: 'greylist',
    score: 1,
  });
  return {
    name,
    stage: 'helo',
    run(session) {
      const helo = heloOf(session);
      if (helo === undefined) return next('no HELO');
      const ip = parseIp(stripRootDot(helo));
      if (!ip) return next();
      return hit(
        name,
        action,
        reply(504, '5.5.2', `<${showHelo(helo)}>: Helo command rejected: need fully-qualified hostname`),
        `HELO is the bare IP ${ip.address}`,
        'bare-ip',
        score,
      );
    },
  };
}

function bool(check: string, key: string, v: unknown, dflt: boolean): boolean {
  if (v === undefined) return dflt;
  if (typeof v !== 'boolean') throw new TypeError(`${check}: ${key} must be true or false`);
  return v;
}
