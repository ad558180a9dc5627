/**
 * Start early, await late (DESIGN principle 4): at connect, a session starts the lookups its checks
 * will need (PTR with forward confirmation, every DNS list), and at HELO/MAIL/RCPT those of the
 * names it then learns. The checks later find the answers in the resolver's cache or join the
 * queries in flight, so a session's DNS latency is the depth of its dependent lookups, not the sum.
 */
import type { ReverseDns, Session } from '@mxguard/core';
import { resolveMailDomain } from './checks/domain.js';
import { queryList } from './lists.js';
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
  if (options.names !== false) {
    const helo = session.helo && !session.helo.startsWith('[') ? canonicalName(session.helo) : undefined;
    const sender = session.mailFrom ? canonicalName(domainOf(session.mailFrom)) : undefined;
    const rcpt = session.rcptTo ? canonicalName(domainOf(session.rcptTo)) : undefined;
    if (helo?.includes('.')) jobs.push(resolver.a(helo), resolver.aaaa(helo));
    if (sender?.includes('.')) jobs.push(resolveMailDomain(resolver, sender));
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
