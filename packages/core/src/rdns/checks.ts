/**
 * The two reverse-DNS checks: `rdns-dynamic` (the client's PTR looks like a dynamic pool) and
 * `rdns-missing` (the client has no PTR at all, as Postfix's reject_unknown_reverse_client_hostname).
 * Both default to `defer`: a dynamic-looking or missing name is doubt, not proof (DESIGN principle 1),
 * and the small honest sender on a home line deserves a delay it can read, not a ban (principle 6).
 */
import { commonOptions, parseClientIp } from '../checks/names.js';
import type { Check, Session, Verdict } from '../model.js';
import type { HitAction } from '../reply.js';
import { hit, next, reply } from '../reply.js';
import type { CheckFactory, CommonCheckOptions, Site } from '../site.js';
import { classifyPtr } from './classify.js';

/** Options of `rdns-dynamic`. */
export interface RdnsDynamicOptions extends CommonCheckOptions {
  /**
   * What a dynamic-looking name does. `reject` answers 550 5.7.1, `defer` 450 4.7.1; `greylist`
   * and `score` leave a finding (tag `dynamic`) for the selective greylist or `weigh()`.
   * @default 'defer'
   */
  readonly action?: HitAction;
  /** Points for `weigh()`. @default 1 */
  readonly score?: number;
}

/** Options of `rdns-missing`. */
export interface RdnsMissingOptions extends CommonCheckOptions {
  /**
   * What a client without a PTR name gets. `reject` answers 550 5.7.1, `defer` 450 4.7.1 (Postfix's
   * `unknown_client_reject_code` default); `greylist`/`score` leave the finding `no-ptr`.
   * @default 'defer'
   */
  readonly action?: HitAction;
  /** Points for `weigh()`. @default 1 */
  readonly score?: number;
}

/** The client address as it may appear in a reply: an IP address, else `unknown` (never a line break). */
function printable(address: string): string {
  return parseClientIp(address)?.address ?? 'unknown';
}

/** The name to judge: the forward-confirmed one when known, else the first PTR name. */
function nameToJudge(session: Session): string | undefined {
  const rdns = session.rdns;
  if (!rdns) return undefined;
  if (typeof rdns.verified === 'string' && rdns.verified.length > 0) return rdns.verified;
  return rdns.names[0];
}

/**
 * `rdns-dynamic` (stage connect): the client's PTR name classifies `dynamic` (see `classifyPtr`).
 * Judges the forward-confirmed name when there is one (Postfix's `client_name`), else the first PTR
 * name: the reverse zone belongs to whoever holds the address, so even an unconfirmed PTR is the
 * provider's own word about it. Reply when rejecting: 550 5.7.1 "Client host rejected:
 * dynamic-looking reverse DNS <name>; please use your provider's mail server"; by default deferred
 * as 450 4.7.1.
 */
export function rdnsDynamic(options: RdnsDynamicOptions = {}): Check {
  const name = 'rdns-dynamic';
  const { action, score } = commonOptions(name, options as Record<string, unknown>, {
    action: 'defer',
    score: 1,
  });
  return {
    name,
    stage: 'connect',
    run(session): Verdict {
      const rdns = session.rdns;
      if (!rdns) return next('reverse DNS not looked up');
      const ptr = nameToJudge(session);
      if (ptr === undefined)
        return next(rdns.error === 'temporary' ? 'temporary DNS failure' : 'no PTR name');
      const c = classifyPtr(session.clientAddress, ptr);
      const why = c.evidence.join('; ');
      if (c.class !== 'dynamic')
        return next(`reverse DNS ${c.class === 'unknown' ? 'unusable' : c.class}: ${why}`);
      const r = reply(
        550,
        '5.7.1',
        `Client host rejected: dynamic-looking reverse DNS ${ptr}; please use your provider's mail server`,
      );
      return hit(name, action, r, `dynamic-looking reverse DNS ${ptr}: ${why}`, 'dynamic', score);
    },
  };
}

/**
 * `rdns-missing` (stage connect): the reverse lookup answered and the client address has no PTR
 * name, as Postfix's `reject_unknown_reverse_client_hostname`, with its text: "Client host rejected:
 * cannot find your reverse hostname, [ip]". A temporary lookup failure is never a hit (principle 2);
 * a session whose reverse DNS was not looked up is not judged.
 */
export function rdnsMissing(options: RdnsMissingOptions = {}): Check {
  const name = 'rdns-missing';
  const { action, score } = commonOptions(name, options as Record<string, unknown>, {
    action: 'defer',
    score: 1,
  });
  return {
    name,
    stage: 'connect',
    run(session): Verdict {
      const rdns = session.rdns;
      if (!rdns) return next('reverse DNS not looked up');
      if (rdns.error === 'temporary') return next('temporary DNS failure');
      if (rdns.names.length > 0) return next('client has a PTR name');
      const ip = printable(session.clientAddress);
      const r = reply(550, '5.7.1', `Client host rejected: cannot find your reverse hostname, [${ip}]`);
      return hit(name, action, r, `no PTR name for ${ip}`, 'no-ptr', score);
    },
  };
}

/** The reverse-DNS checks by config name: `rdns-dynamic` and `rdns-missing`. Options as above. */
export const rdnsFactories: Record<string, CheckFactory> = {
  'rdns-dynamic': (options: Record<string, unknown>, _site: Site) =>
    rdnsDynamic(options as RdnsDynamicOptions),
  'rdns-missing': (options: Record<string, unknown>, _site: Site) =>
    rdnsMissing(options as RdnsMissingOptions),
};
