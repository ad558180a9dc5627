import { createHash } from 'node:crypto';
import { ipNetwork, parseClientIp } from '@mxguard/core';

/**
 * Greylist keys: (client network, normalised sender, recipient), lower case, as postgrey's
 * `client_net/sender/recipient`. The client part is a network, not the address, because large
 * senders retry from another address of the same pool (postgrey `--ipv4cidr=24 --ipv6cidr=64`).
 */

/** How much of the client address goes into the key. */
export interface KeyOptions {
  /** Prefix length of the IPv4 network; 32 keys by the full address. @default 24 (postgrey `--ipv4cidr`) */
  readonly ipv4Prefix?: number;
  /** Prefix length of the IPv6 network; 128 keys by the full address. @default 64 (postgrey `--ipv6cidr`) */
  readonly ipv6Prefix?: number;
}

/**
 * The client's network in CIDR form (`192.0.2.0/24`, `2001:db8:1:2::/64`), or `undefined` for a
 * non-address. IPv4-mapped IPv6 (`::ffff:192.0.2.1`, as Node's sockets report IPv4 clients on a
 * dual-stack listener) counts as IPv4. TypeError when a prefix length is out of range.
 */
export function clientNetwork(address: string, options: KeyOptions = {}): string | undefined {
  return ipNetwork(address, options.ipv4Prefix ?? 24, options.ipv6Prefix ?? 64);
}

/** The client address in canonical form: the auto-whitelist key (postgrey keys it by address). */
export function clientAddressKey(address: string): string | undefined {
  return parseClientIp(address)?.address;
}

/**
 * Normalises a sender so that one sender gives one key however its software varies the address
 * per message, as postgrey (`do_sender_substitutions`) and sqlgrey (`deverp_user`) do:
 * - BATV: `prvs=TAG=user@d` and `prvs=user=TAG@d` (RFC draft-levine-smtp-batv) become `user@d`;
 * - SRS (Sender Rewriting Scheme): `SRS0=HHH=TT=orig.domain=user@fwd` keeps the original domain
 *   and user, masks the hash and time stamp; `SRS1=HHH=fwd0==HHH=TT=d=u@fwd` likewise;
 * - `user+extension` (VERP, mailing lists) becomes `user`;
 * - every number standing as a word (`bounce-12345-678@d`) becomes `#`.
 * The null sender `<>` (bounces, RFC 5321 section 4.5.5) is kept as `<>`, so it is greylisted by its
 * (client, recipient) pair alone. Lower case throughout: the local part's case is not significant
 * to the greylist, as in postgrey (`lc` of the whole key).
 */
export function normaliseSender(sender: string): string {
  let s = sender.trim().replace(/^<|>$/g, '').toLowerCase();
  if (s === '') return '<>';
  const at = s.lastIndexOf('@');
  if (at < 0) return s;
  let user = s.slice(0, at);
  const domain = s.slice(at + 1);
  // BATV: prvs=tag-val=loc-core, sometimes prvs=loc-core=tag-val (postgrey's comment). The tag is
  // a key number digit, a 3-digit day and 6 hex digits: 10 characters of [0-9a-z] at least.
  const batv = /^(?:prvs|msprvs1|btv1)=([^=]+)=([^=]+)$/.exec(user);
  if (batv) {
    const a = batv[1] ?? '';
    const b = batv[2] ?? '';
    const tag = /^[0-9a-z]{10}/;
    user = tag.test(a) && !tag.test(b) ? b : tag.test(b) && !tag.test(a) ? a : b;
  }
  // SRS, after sqlgrey: mask the hash and time stamp, keep the original user and domain.
  user = user
    .replace(/^srs0=[^=]+=[^=]+=([^=]+)=/, 'srs0=#=#=$1=')
    .replace(/^srs1=[^=]+=([^=]+)==?[^=]+=[^=]+=([^=]+)=/, 'srs1=#=$1=#=#=$2=');
  // Strip the extension (user+ext), used for mailing-list VERP.
  if (!user.startsWith('srs')) user = user.replace(/\+.*$/, '');
  // Numbers in VERP-style local parts (\b\d+\b, as postgrey).
  user = user.replace(/\b\d+\b/g, '#');
  s = `${user}@${domain}`;
  return s;
}

/** Normalises a recipient for the key: angle brackets off, lower case. */
export function normaliseRecipient(rcpt: string): string {
  return rcpt.trim().replace(/^<|>$/g, '').toLowerCase();
}

/** The triplet key: `network/sender/recipient`. `undefined` when the client is not an address. */
export function tripletKey(
  clientAddress: string,
  sender: string,
  recipient: string,
  options: KeyOptions = {},
): string | undefined {
  const net = clientNetwork(clientAddress, options);
  if (net === undefined) return undefined;
  return networkTripletKey(net, sender, recipient);
}

/** The triplet key from the client network already worked out (`ipNetwork` of a parsed address). */
export function networkTripletKey(network: string, sender: string, recipient: string): string {
  return `${network}/${bounded(normaliseSender(sender))}/${bounded(normaliseRecipient(recipient))}`;
}

/**
 * RFC 5321 section 4.5.3.1.3 bounds a path at 256 octets; a longer one (a server that accepts it,
 * or a hostile client) is replaced by its SHA-1 so a key, a Redis key included, stays small.
 */
const MAX_PART = 256;
function bounded(part: string): string {
  return part.length <= MAX_PART ? part : `sha1:${createHash('sha1').update(part).digest('hex')}`;
}
