/**
 * `sender-domain` and `recipient-domain`: the domain of the address exists for mail, as Postfix's
 * reject_unknown_sender_domain / reject_unknown_recipient_domain (smtpd_check.c
 * reject_unknown_mailhost: MX, else A/AAAA):
 * - null MX (RFC 7505): 550 5.7.27 for senders, 556 5.1.10 for recipients, "<addr>: Sender address
 *   rejected: Domain d does not accept mail (nullMX)" (RFC 7505 section 4.2, Postfix 3.1+);
 * - not found: `unknown_address_reject_code` (450) 4.1.8 / 4.1.2 "Domain not found", 550 5.1.8 /
 *   5.1.2 when the site sets 550;
 * - a temporary failure: DEFER_IF_PERMIT 450 4.1.8 / 4.1.2 (unknown_address_tempfail_action),
 *   never a 5xx;
 * - an MX whose hosts all resolve only to loopback or private addresses: a finding of its own
 *   (`mx-private`), deferred by default for senders: no bounce could ever be delivered there.
 */
import type { Check, HitAction, Session, Verdict } from '@mxguard/core';
import { hit, next, reply } from '@mxguard/core';
import { canonicalName, domainOf, isNonPublicAddress, normaliseIp, printable } from '../names.js';
import type { DnsResult, Resolver } from '../types.js';
import { tempfailVerdict } from './helo.js';
import type { TempfailAction } from './options.js';

/** MX hosts whose addresses are looked up for the private-MX finding, best priority first. */
export const MAX_MX_HOSTS_CHECKED = 5;

/** Options of `sender-domain` and `recipient-domain`. */
export interface DomainCheckOptions {
  /** What a domain that does not exist gets; `reject` uses `rejectCode`. @default 'reject' */
  readonly action?: HitAction;
  /** Postfix unknown_address_reject_code: 450 or 550. @default 450 */
  readonly rejectCode?: 450 | 550;
  /** What a null MX gets. @default 'reject' */
  readonly nullMx?: HitAction;
  /**
   * What an MX pointing only at loopback/private addresses gets; `off` skips the address lookups.
   * @default 'defer' for sender-domain, 'off' for recipient-domain
   */
  readonly privateMx?: HitAction | 'off';
  /** On a temporary DNS failure. @default 'defer_if_permit' */
  readonly tempfail?: TempfailAction;
  /** Points for weigh(). @default 1 */
  readonly score?: number;
  /**
   * Domains we are the final destination for (the site's `ourDomains`): never looked up. Postfix
   * applies reject_unknown_sender_domain / reject_unknown_recipient_domain only "when Postfix is
   * not the final destination" for the address: our own domains may live in split-horizon DNS.
   * @default []
   */
  readonly ourDomains?: readonly string[];
}

type Kind = 'sender' | 'recipient';

const KIND = {
  sender: {
    check: 'sender-domain',
    cls: 'Sender address',
    detail: '1.8',
    nullCode: 550,
    nullEnhanced: '5.7.27',
    stage: 'mail',
    privateMx: 'defer',
  },
  recipient: {
    check: 'recipient-domain',
    cls: 'Recipient address',
    detail: '1.2',
    nullCode: 556,
    nullEnhanced: '5.1.10',
    stage: 'rcpt',
    privateMx: 'off',
  },
} as const;

/** What DNS says about a mail domain. */
export type MailDomainStatus =
  | {
      /** The domain receives mail. */
      readonly status: 'ok';
      /** `mx`: from its MX records; `address`: no MX, so its own A/AAAA (the implicit MX). */
      readonly via: 'mx' | 'address';
      /** The MX exchanges (by priority as DNS gave them), or the domain itself for `address`. */
      readonly hosts: readonly string[];
    }
  | {
      /** The domain publishes a null MX (RFC 7505): it accepts no mail. */
      readonly status: 'nullmx';
    }
  | {
      /** The domain does not exist, or has neither MX nor address records. */
      readonly status: 'notfound';
      /** What DNS said (`NXDOMAIN`, `NODATA`), for the log. */
      readonly detail: string;
    }
  | {
      /** A lookup failed temporarily: nothing is known (never a 5xx). */
      readonly status: 'temporary';
      /** What failed (`SERVFAIL`, `TIMEOUT`, ...), for the log. */
      readonly detail: string;
    };

/**
 * Resolves a mail domain as Postfix does: MX first; on NODATA, A and AAAA in parallel (the implicit
 * MX of RFC 5321 5.1); NXDOMAIN on the MX query ends it (RFC 8020: no other type exists either).
 */
export async function resolveMailDomain(resolver: Resolver, domain: string): Promise<MailDomainStatus> {
  const mx = await resolver.mx(domain);
  if (mx.ok) {
    const hosts = mx.records.filter((r) => r.exchange !== '').map((r) => r.exchange);
    if (hosts.length === 0) return { status: 'nullmx' };
    return { status: 'ok', via: 'mx', hosts };
  }
  if (mx.error === 'temporary') return { status: 'temporary', detail: `MX ${mx.detail}` };
  if (mx.detail === 'NXDOMAIN') return { status: 'notfound', detail: 'NXDOMAIN' };
  const [a, aaaa] = await Promise.all([resolver.a(domain), resolver.aaaa(domain)]);
  if (a.ok || aaaa.ok) return { status: 'ok', via: 'address', hosts: [domain] };
  const t = [a, aaaa].find(
    (r): r is Extract<DnsResult<string>, { ok: false }> => !r.ok && r.error === 'temporary',
  );
  if (t) return { status: 'temporary', detail: `A/AAAA ${t.detail}` };
  return { status: 'notfound', detail: 'no MX, A or AAAA' };
}

/**
 * True when every MX host resolves and every address is loopback/private; false when any is
 * public; `undefined` when it cannot be told (a lookup failed, a host has no address).
 */
export async function mxOnlyPrivate(
  resolver: Resolver,
  hosts: readonly string[],
): Promise<boolean | undefined> {
  const checked = hosts.slice(0, MAX_MX_HOSTS_CHECKED);
  const perHost = await Promise.all(
    checked.map(async (h): Promise<string[] | undefined> => {
      const literal = normaliseIp(h.replace(/^\[|\]$/g, ''));
      if (literal !== undefined) return [literal];
      const [a, aaaa] = await Promise.all([resolver.a(h), resolver.aaaa(h)]);
      if ((!a.ok && a.error === 'temporary') || (!aaaa.ok && aaaa.error === 'temporary')) return undefined;
      return [...(a.ok ? a.records : []), ...(aaaa.ok ? aaaa.records : [])];
    }),
  );
  let any = false;
  for (const addrs of perHost) {
    if (addrs === undefined) return undefined;
    for (const ip of addrs) {
      if (!isNonPublicAddress(ip)) return false;
      any = true;
    }
  }
  // Hosts without any address are a different fault (a dangling MX): not proven private.
  return any && perHost.every((a) => a !== undefined && a.length > 0) ? true : undefined;
}

function domainCheck(kind: Kind, resolver: Resolver, options: DomainCheckOptions): Check {
  const k = KIND[kind];
  const name = k.check;
  const action = options.action ?? 'reject';
  const code = options.rejectCode ?? 450;
  const nullMx = options.nullMx ?? 'reject';
  const privateMx = options.privateMx ?? k.privateMx;
  const tempfail = options.tempfail ?? 'defer_if_permit';
  const score = options.score ?? 1;
  const addressOf = (s: Session) => (kind === 'sender' ? s.mailFrom : s.rcptTo);
  const ours = new Set((options.ourDomains ?? []).map((d) => d.toLowerCase().replace(/\.$/, '')));
  return {
    name,
    stage: k.stage,
    async run(session): Promise<Verdict> {
      const address = addressOf(session);
      if (address === undefined) return next(`no ${kind}`);
      if (address === '') return next('null sender');
      const raw = domainOf(address);
      if (raw === undefined) return next('address without a domain (the FQDN checks judge it)');
      if (raw.startsWith('[')) return next('address literal');
      const domain = canonicalName(raw);
      if (domain === undefined || !domain.includes('.'))
        return next(`"${printable(raw, 64)}" is not a domain name`);
      if (ours.has(domain)) return next(`${domain} is ours (final destination): not looked up`);
      const shown = printable(address, 200);
      const st = await resolveMailDomain(resolver, domain);
      switch (st.status) {
        case 'temporary':
          return tempfailVerdict(
            tempfail,
            450,
            `4.${k.detail}`,
            `<${shown}>: ${k.cls} rejected: Domain not found`,
            `${kind} domain ${domain}: temporary DNS failure (${st.detail})`,
          );
        case 'notfound':
          return hit(
            name,
            action,
            reply(
              code,
              `${Math.floor(code / 100)}.${k.detail}`,
              `<${shown}>: ${k.cls} rejected: Domain not found`,
            ),
            `${kind} domain ${domain} not found (${st.detail})`,
            'domain-unknown',
            score,
          );
        case 'nullmx':
          return hit(
            name,
            nullMx,
            reply(
              k.nullCode,
              k.nullEnhanced,
              `<${shown}>: ${k.cls} rejected: Domain ${domain} does not accept mail (nullMX)`,
            ),
            `${kind} domain ${domain} has a null MX (RFC 7505)`,
            'null-mx',
            score,
          );
        case 'ok': {
          if (privateMx === 'off' || st.via !== 'mx')
            return next(`${kind} domain ${domain} exists (${st.via})`);
          const only = await mxOnlyPrivate(resolver, st.hosts);
          if (only !== true) return next(`${kind} domain ${domain} exists (mx)`);
          return hit(
            name,
            privateMx,
            reply(
              550,
              `5.${k.detail}`,
              `<${shown}>: ${k.cls} rejected: Domain ${domain} has no public mail exchanger`,
            ),
            `${kind} domain ${domain}: MX ${st.hosts.slice(0, MAX_MX_HOSTS_CHECKED).join(', ')} only at loopback/private addresses`,
            'mx-private',
            score,
          );
        }
      }
    },
  };
}

/** `sender-domain` (stage mail), as reject_unknown_sender_domain. The null sender passes. */
export function senderDomain(resolver: Resolver, options: DomainCheckOptions = {}): Check {
  return domainCheck('sender', resolver, options);
}

/** `recipient-domain` (stage rcpt), as reject_unknown_recipient_domain. */
export function recipientDomain(resolver: Resolver, options: DomainCheckOptions = {}): Check {
  return domainCheck('recipient', resolver, options);
}
