/**
 * Start early, await late (DESIGN principle 4): at connect, a session starts the lookups its checks
 * will need (PTR with forward confirmation, every DNS list), and at HELO/MAIL/RCPT those of the
 * names it then learns. The checks later find the answers in the resolver's cache or join the
 * queries in flight, so a session's DNS latency is the depth of its dependent lookups, not the sum.
 */
import type { Clock, Logger, ReverseDns, Session } from '@mxguard/core';
import { silentLogger, systemClock } from '@mxguard/core';
import { healthFor } from './checks/dnslists.js';
import { mxOnlyPrivate, resolveMailDomain } from './checks/domain.js';
import type { ListHealth } from './lists.js';
import { ipListKind, queryList } from './lists.js';
import type { ListSpec } from './listspec.js';
import { canonicalName, domainOf, normaliseIp, reversedIp } from './names.js';
import { lookupRdns } from './rdns.js';
import type { Resolver } from './types.js';

/** What to prefetch. */
export interface PrefetchOptions {
  /** Client-IP lists (dnsbl and dnswl). */
  readonly dnsLists?: readonly ListSpec[];
  /** Right-hand-side lists, for the HELO name and sender domain when the session has them. */
  readonly rhsLists?: readonly ListSpec[];
  /** Look up the reverse DNS (PTR and forward confirmation). @default true */
  readonly rdns?: boolean;
  /** Look up the HELO name, sender and recipient domains when the session has them. @default true */
  readonly names?: boolean;
  /**
   * Start the lists' health probes too (when due), so the checks do not wait for them.
   * @default the ListHealth the checks share for this resolver; `false`: none
   */
  readonly health?: ListHealth | false;
  /** Clock for the health probes. @default systemClock */
  readonly clock?: Clock;
  /** Logger for the health probes. @default silentLogger */
  readonly log?: Logger;
}

/** Lookups started by prefetch. */
export interface Prefetched {
  /** The client's reverse DNS, for `session.rdns`. */
  readonly rdns: Promise<ReverseDns>;
  /** Settles when every lookup started has finished; never rejects. */
  readonly settled: Promise<void>;
}

/**
 * Starts the lookups the DNS checks will make for this session and returns at once. Safe to call at
 * every stage: lookups already made are cache hits and cost nothing on the wire.
 */
export function prefetch(resolver: Resolver, session: Session, options: PrefetchOptions = {}): Prefetched {
  const jobs: Promise<unknown>[] = [];
  const ip = normaliseIp(session.clientAddress);
  const rdns =
    ip !== undefined && options.rdns !== false
      ? lookupRdns(resolver, ip)
      : Promise.resolve<ReverseDns>({ names: [], verified: null });
  jobs.push(rdns);
  const label = ip === undefined ? undefined : reversedIp(ip);
  if (label !== undefined)
    for (const spec of options.dnsLists ?? []) jobs.push(queryList(resolver, spec, label, { txt: true }));
  const health = options.health ?? healthFor(resolver);
  if (health) {
    const clock = options.clock ?? systemClock;
    const log = options.log ?? silentLogger;
    for (const spec of options.dnsLists ?? [])
      if (ip !== undefined) jobs.push(health.usable(resolver, spec.zone, ipListKind(ip), clock, log));
    for (const spec of options.rhsLists ?? [])
      jobs.push(health.usable(resolver, spec.zone, 'name', clock, log));
  }
  if (options.names !== false) {
    const helo = session.helo && !session.helo.startsWith('[') ? canonicalName(session.helo) : undefined;
    const sender = session.mailFrom ? canonicalName(domainOf(session.mailFrom)) : undefined;
    const rcpt = session.rcptTo ? canonicalName(domainOf(session.rcptTo)) : undefined;
    if (helo?.includes('.')) jobs.push(resolver.a(helo), resolver.aaaa(helo));
    // The sender's MX hosts' addresses too: sender-domain's private-MX finding needs them.
    if (sender?.includes('.')) {
      jobs.push(
        resolveMailDomain(resolver, sender).then((st) =>
          st.status === 'ok' && st.via === 'mx' ? mxOnlyPrivate(resolver, st.hosts) : undefined,
        ),
      );
    }
    if (rcpt?.includes('.')) jobs.push(resolveMailDomain(resolver, rcpt));
    for (const name of [helo, sender]) {
      if (!name?.includes('.')) continue;
      for (const spec of options.rhsLists ?? []) jobs.push(queryList(resolver, spec, name, { txt: true }));
    }
    // The verified PTR name's right-hand-side lookups depend on the rDNS answer.
    if ((options.rhsLists ?? []).length > 0) {
      jobs.push(
        rdns.then((r) =>
          typeof r.verified === 'string'
            ? Promise.all(
                (options.rhsLists ?? []).map((spec) =>
                  queryList(resolver, spec, r.verified as string, { txt: true }),
                ),
              )
            : undefined,
        ),
      );
    }
  }
  const settled = Promise.allSettled(jobs).then(() => undefined);
  return { rdns, settled };
}
