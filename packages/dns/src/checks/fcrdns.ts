/**
 * `fcrdns`: the client's PTR names are not forward-confirmed (none of them resolves back to the
 * client address). Postfix's reject_unknown_client_hostname refuses that with 450 4.7.1 "Client host
 * rejected: cannot find your hostname, [ip]"; here it is a doubt by default (DESIGN principles 1
 * and 6): many honest servers have a stale or half-configured reverse zone.
 */
import type { Check, HitAction, Verdict } from '@mxguard/core';
import { hit, next, reply } from '@mxguard/core';
import { normaliseIp } from '../names.js';
import { lookupRdns } from '../rdns.js';
import type { Resolver } from '../types.js';

/** Options of `fcrdns`. */
export interface FcrdnsOptions {
  /**
   * What an unconfirmed PTR does. `greylist`: a doubt (tag `not-fcrdns`) for the selective
   * greylist; `score`: points for weigh(); `defer`: 450 4.7.1; `reject`: 550 5.7.1. Never reject
   * by default: a broken reverse zone is the ISP's mistake as often as the sender's.
   * @default 'greylist'
   */
  readonly action?: HitAction;
  /** Points for weigh(). @default 1 */
  readonly score?: number;
}

/**
 * `fcrdns` (stage connect). Uses `session.rdns` when the adapter looked it up with forward
 * confirmation, else looks it up itself (cached and coalesced by the resolver). No PTR at all is
 * `rdns-missing`'s finding, not this one's; a temporary failure is no opinion.
 */
export function fcrdns(resolver: Resolver, options: FcrdnsOptions = {}): Check {
  const name = 'fcrdns';
  const action = options.action ?? 'greylist';
  const score = options.score ?? 1;
  return {
    name,
    stage: 'connect',
    async run(session): Promise<Verdict> {
      const ip = normaliseIp(session.clientAddress);
      if (ip === undefined) return next('client address is not an IP address');
      let rdns = session.rdns;
      if (!rdns || (rdns.verified === undefined && rdns.error === undefined))
        rdns = await lookupRdns(resolver, ip);
      if (rdns.error === 'temporary') return next('temporary DNS failure');
      if (rdns.names.length === 0) return next('no PTR name');
      if (typeof rdns.verified === 'string') return next(`forward-confirmed as ${rdns.verified}`);
      const names = rdns.names.slice(0, 5).join(', ');
      const several = rdns.names.length > 1 ? ` (${rdns.names.length} PTR names)` : '';
      const r = reply(550, '5.7.1', `Client host rejected: cannot find your hostname, [${ip}]`);
      return hit(
        name,
        action,
        r,
        `PTR ${names}${several} does not resolve back to ${ip}`,
        'not-fcrdns',
        score,
      );
    },
  };
}
