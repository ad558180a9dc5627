/**
 * Relay control and the clients we trust: Postfix's `permit_mynetworks,
 * permit_sasl_authenticated, reject_unauth_destination`, and a whitelist of forwarders.
 * See docs/checks/relay.md.
 */
import { clientIp } from '../memo.js';
import type { Check, Session } from '../model.js';
import type { HitAction } from '../reply.js';
import { accept, hit, next, reply } from '../reply.js';
import type { Site } from '../site.js';
import {
  commonOptions,
  compileNetworks,
  isValidHostname,
  type NetworkList,
  normaliseIp,
  normaliseName,
  parseHeloLiteral,
  parseIp,
} from './names.js';

/** What a site knows about its own clients, compiled once from the Site. */
export interface ClientTrust {
  /** Client address in `site.ourNetworks` (Postfix `permit_mynetworks`). */
  inOurNetworks(session: Session): boolean;
  /** Client address is one of `site.ourAddresses`: the client is this host. */
  isOurAddress(session: Session): boolean;
  /** Client in ourNetworks, or authenticated (Postfix `permit_sasl_authenticated`). */
  isPrivileged(session: Session): boolean;
  /**
   * Client in `site.trustedForwarders`: by address/CIDR, or by host name matched against the
   * forward-confirmed reverse name (`session.rdns.verified`) only, never a claimed (PTR-only or HELO)
   * name, which a stranger controls. A name `.example.com` matches subdomains of example.com only.
   */
  isTrustedForwarder(session: Session): boolean;
}

const trustCache = new WeakMap<Site, ClientTrust>();

/**
 * Compiles a site's networks and forwarders (cached per Site object). Throws TypeError naming the
 * entry when `ourNetworks`, `ourAddresses` or `trustedForwarders` holds something that is not an
 * address, a CIDR (or, for forwarders, a host name).
 */
export function clientTrust(site: Site): ClientTrust {
  const cached = trustCache.get(site);
  if (cached) return cached;
  const ourNetworks = compileNetworks(site.ourNetworks, 'site.ourNetworks');
  const ourAddresses = new Set<string>();
  for (const a of site.ourAddresses) {
    const n = normaliseIp(a);
    if (!n) throw new TypeError(`site.ourAddresses: "${a}" is not an IP address`);
    ourAddresses.add(n);
  }
  const nets: string[] = [];
  const exactNames = new Set<string>();
  const suffixes: string[] = [];
  for (const f of site.trustedForwarders) {
    const e = f.trim().toLowerCase();
    if (/^[0-9a-f:.[\]]+(\/\d+)?$/i.test(e) && (e.includes('/') || parseIp(e.replace(/^\[|\]$/g, '')))) {
      nets.push(e);
    } else if (e.startsWith('.') && isValidHostname(e.slice(1))) {
      suffixes.push(normaliseName(e.slice(1)) ?? e.slice(1));
    } else if (isValidHostname(e.replace(/\.$/, ''))) {
      exactNames.add(normaliseName(e) ?? e);
    } else {
      throw new TypeError(`site.trustedForwarders: "${f}" is not an address, a CIDR or a host name`);
    }
  }
  const forwarders: NetworkList = compileNetworks(nets, 'site.trustedForwarders');
  // The client address is parsed once a session (clientIp) and shared by every test here.
  const inNets = (list: NetworkList, s: Session) => {
    const ip = clientIp(s);
    return ip !== null && list.has(ip);
  };
  const t: ClientTrust = {
    inOurNetworks: (s) => inNets(ourNetworks, s),
    isOurAddress: (s) => {
      const n = clientIp(s)?.address;
      return n !== undefined && ourAddresses.has(n);
    },
    isPrivileged: (s) => inNets(ourNetworks, s) || isAuthenticated(s),
    isTrustedForwarder: (s) => {
      if (forwarders.entries.length > 0 && inNets(forwarders, s)) return true;
      const v = s.rdns?.verified;
      if (typeof v !== 'string' || v.length === 0) return false;
      const name = normaliseName(v);
      if (!name) return false;
      if (exactNames.has(name)) return true;
      return suffixes.some((d) => name.length > d.length && name.endsWith(`.${d}`));
    },
  };
  trustCache.set(site, t);
  return t;
}

function isAuthenticated(s: Session): boolean {
  return typeof s.authUser === 'string' && s.authUser.length > 0;
}

/** The domain part of a recipient, as Postfix's strrchr(addr, '@'): lower case, root dot stripped. */
function recipientDomain(rcpt: string): string | null {
  const at = rcpt.lastIndexOf('@');
  if (at < 0) return null;
  return rcpt
    .slice(at + 1)
    .toLowerCase()
    .replace(/\.$/, '');
}

/** True when the local part (after any source route) carries a %, ! or @ route, as Postfix's RESOLVE_FLAG_ROUTED. */
function routeOf(rcpt: string): boolean {
  let r = rcpt;
  if (r.startsWith('@')) {
    const colon = r.indexOf(':');
    if (colon >= 0) r = r.slice(colon + 1);
  }
  const local = r.slice(0, Math.max(0, r.lastIndexOf('@')));
  return /[%!@]/.test(local);
}

/** Options of {@link relayCheck}. Default action: `reject`. */
export interface RelayOptions {
  /** @default 'reject' */
  readonly action?: HitAction;
  /** @default 1 */
  readonly score?: number;
}

/**
 * `relay` (stage rcpt), as Postfix's `permit_mynetworks, permit_sasl_authenticated,
 * reject_unauth_destination`:
 * - client in `site.ourNetworks`, or authenticated: accept (the chain ends: our own users may relay);
 * - recipient domain exactly one of `site.ourDomains` (relay_domains without parent matching: a
 *   subdomain of ours is not ours unless listed): next;
 * - otherwise 554 5.7.1 "<rcpt>: Relay access denied" (Postfix's text and `relay_domains_reject_code`),
 *   also for a local part that routes elsewhere (`user%elsewhere@us`, `host!user@us`,
 *   `"user@elsewhere"@us`), as Postfix with allow_untrusted_routing = no (its default).
 * A recipient without a domain (`postmaster`, RFC 5321 4.1.1.3) is local: next. An address-literal
 * domain is ours only when it is one of `site.ourAddresses`. A missing recipient: next.
 */
export function relayCheck(options: RelayOptions = {}, site: Site): Check {
  const name = 'relay';
  const { action, score } = commonOptions(name, options as Record<string, unknown>, {
    action: 'reject',
    score: 1,
  });
  const trust = clientTrust(site);
  const domains = new Set(site.ourDomains.map((d) => normaliseName(d) ?? d));
  const addresses = new Set(site.ourAddresses.map((a) => normaliseIp(a)).filter((a) => a !== null));
  return {
    name,
    stage: 'rcpt',
    run(session) {
      if (trust.inOurNetworks(session)) return accept('client in ourNetworks (permit_mynetworks)');
      if (isAuthenticated(session)) return accept('client authenticated (permit_sasl_authenticated)');
      const rcpt = session.rcptTo;
      if (typeof rcpt !== 'string' || rcpt.length === 0) return next('no recipient');
      const domain = recipientDomain(rcpt);
      if (domain === null) return next('recipient without a domain is local');
      // A route in the local part (user%elsewhere@us, elsewhere!user@us, "user@elsewhere"@us) is
      // relaying through us by the back door: Postfix refuses it with allow_untrusted_routing = no.
      const route = routeOf(rcpt);
      const lit = parseHeloLiteral(domain);
      if (route) {
        // fall through to the rejection
      } else if (lit) {
        if (lit.valid && addresses.has(lit.address)) return next('recipient literal is our address');
      } else {
        const n = normaliseName(domain);
        if (n !== null && domains.has(n)) return next(`recipient domain ${n} is ours`);
      }
      const shown = rcpt.length > 256 ? `${rcpt.slice(0, 253)}...` : rcpt;
      return hit(
        name,
        action,
        reply(554, '5.7.1', `<${oneLine(shown)}>: Relay access denied`),
        route
          ? 'recipient local part is routed (%, ! or @) and the client may not relay'
          : `recipient domain ${oneLine(domain).slice(0, 256)} is not ours and the client may not relay`,
        'relay-denied',
        score,
      );
    },
  };
}

/** Options of {@link trustedCheck}. */
export type TrustedOptions = Record<string, never>;

/**
 * `trusted` (stage connect): a client in `site.trustedForwarders` (address, CIDR, or a host name
 * matched only against the forward-confirmed reverse name) is accepted ("trusted forwarder") so no
 * later check refuses what it relays (a refused forward is a bounce from the forwarder). Else next.
 */
export function trustedCheck(options: TrustedOptions = {}, site: Site): Check {
  const name = 'trusted';
  if (Object.keys(options ?? {}).length > 0) {
    throw new TypeError(`${name}: unknown option "${Object.keys(options)[0]}"`);
  }
  const trust = clientTrust(site);
  return {
    name,
    stage: 'connect',
    run(session) {
      return trust.isTrustedForwarder(session) ? accept('trusted forwarder') : next();
    },
  };
}

/** Replaces control characters (CR, LF, NUL...) so a stranger's text cannot break a reply line. */
export function oneLine(s: string): string {
  return s.replace(/[\u0000-\u001f\u007f]/g, '?');
}
