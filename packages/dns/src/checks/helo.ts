/**
 * `helo-resolves`: the HELO name has an address (A/AAAA) or, failing that, an MX record, as
 * Postfix's reject_unknown_helo_hostname (smtpd_check.c reject_unknown_hostname): not found is
 * `unknown_hostname_reject_code` (450) 4.7.1 "<name>: Helo command rejected: Host not found"; a
 * temporary failure is DEFER_IF_PERMIT 450 4.7.1 (unknown_helo_hostname_tempfail_action). A null
 * MX is fine here: Postfix allows MTA names to have one.
 */
import type { Check, HitAction, Verdict } from '@mxguard/core';
import { defer, hit, next, reply } from '@mxguard/core';
import { canonicalName, printable } from '../names.js';
import type { Resolver } from '../types.js';
import type { TempfailAction } from './options.js';

/** Options of `helo-resolves`. */
export interface HeloResolvesOptions {
  /** What a name that does not resolve gets; `reject` uses `rejectCode`. @default 'reject' */
  readonly action?: HitAction;
  /** Postfix unknown_hostname_reject_code: 450 (retry) or 550. @default 450 */
  readonly rejectCode?: 450 | 550;
  /** On a temporary DNS failure. @default 'defer_if_permit' */
  readonly tempfail?: TempfailAction;
  /** Points for weigh(). @default 1 */
  readonly score?: number;
}

/** A 4xx for a temporary failure, as the tempfail action says; never a 5xx. */
export function tempfailVerdict(
  t: TempfailAction,
  code: number,
  enhanced: string,
  text: string,
  reason: string,
): Verdict {
  if (t === 'next') return next(reason);
  return defer(reply(code, enhanced, text), reason, t === 'defer_if_permit');
}

/**
 * `helo-resolves` (stage helo). Address literals (`[192.0.2.1]`) and names that are not host-name
 * syntax are not looked up (helo-syntax judges them): no query is built from them.
 */
export function heloResolves(resolver: Resolver, options: HeloResolvesOptions = {}): Check {
  const name = 'helo-resolves';
  const action = options.action ?? 'reject';
  const code = options.rejectCode ?? 450;
  const tempfail = options.tempfail ?? 'defer_if_permit';
  const score = options.score ?? 1;
  return {
    name,
    stage: 'helo',
    async run(session): Promise<Verdict> {
      const helo = session.helo;
      if (!helo) return next('no HELO name');
      if (helo.startsWith('[')) return next('address literal');
      const n = canonicalName(helo);
      if (n === undefined || !n.includes('.'))
        return next('not a fully qualified host name (helo-syntax judges it)');
      const shown = printable(n, 255);
      const [a, aaaa] = await Promise.all([resolver.a(n), resolver.aaaa(n)]);
      if (a.ok || aaaa.ok) return next(`${n} has an address`);
      let temporary =
        !a.ok && a.error === 'temporary'
          ? a.detail
          : !aaaa.ok && aaaa.error === 'temporary'
            ? aaaa.detail
            : undefined;
      // NXDOMAIN holds for every type (RFC 8020): no MX query for a name that does not exist.
      const nx = !a.ok && a.detail === 'NXDOMAIN' && !aaaa.ok && aaaa.detail === 'NXDOMAIN';
      if (!nx) {
        const mx = await resolver.mx(n);
        if (mx.ok) return next(`${n} has MX records`);
        if (mx.error === 'temporary') temporary ??= mx.detail;
      }
      const text = `<${shown}>: Helo command rejected: Host not found`;
      if (temporary !== undefined) {
        return tempfailVerdict(
          tempfail,
          450,
          '4.7.1',
          text,
          `HELO ${n}: temporary DNS failure (${temporary})`,
        );
      }
      const r = reply(code, `${Math.floor(code / 100)}.7.1`, text);
      return hit(name, action, r, `HELO ${n} has no A, AAAA or MX record`, 'helo-unknown', score);
    },
  };
}
