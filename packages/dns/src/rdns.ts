/**
 * Reverse DNS with forward confirmation (FCrDNS): PTR names of the client address, then the A (or
 * AAAA) records of each name, in parallel. The result is core's `ReverseDns`, which feeds the
 * dynamic-pool classifier (`rdns-dynamic`), `rdns-missing` and `fcrdns`.
 */
import type { ReverseDns } from '@mxguard/core';
import { canonicalName, ipFamily, normaliseIp } from './names.js';
import type { Resolver } from './types.js';

/**
 * PTR names whose forward records are checked, in PTR order. An address with more PTR names than
 * this is unusual (shared hosting); checking every one would let a stranger's reverse zone make us
 * send any number of queries. Postfix checks one name (getnameinfo).
 */
export const MAX_PTR_NAMES_CHECKED = 5;

/** Options of lookupRdns. */
export interface RdnsOptions {
  /** PTR names forward-checked. @default MAX_PTR_NAMES_CHECKED (5) */
  readonly maxNames?: number;
}

/**
 * Looks up the reverse DNS of `ip`. Depth two: the PTR query, then the forward queries of all
 * (at most `maxNames`) names at once.
 * - PTR not found: `{ names: [], verified: null }` (no PTR at all).
 * - PTR failed temporarily: `{ names: [], error: 'temporary' }`: unknown, not absent.
 * - otherwise `verified` is the first name (in PTR order) whose addresses include the client;
 *   `null` when none does; and when none does and a forward lookup failed temporarily, `verified`
 *   is left undefined with `error: 'temporary'`.
 * Invalid PTR names (not host-name syntax) are kept in `names` only if valid; they are never
 * forward-queried.
 */
export async function lookupRdns(
  resolver: Resolver,
  ip: string,
  options: RdnsOptions = {},
): Promise<ReverseDns> {
  const client = normaliseIp(ip);
  const family = ipFamily(ip);
  if (client === undefined || family === undefined) return { names: [], verified: null };
  const ptr = await resolver.ptr(client);
  if (!ptr.ok)
    return ptr.error === 'temporary' ? { names: [], error: 'temporary' } : { names: [], verified: null };
  const names: string[] = [];
  for (const raw of ptr.records) {
    const n = canonicalName(raw);
    if (n !== undefined && !names.includes(n)) names.push(n);
  }
  if (names.length === 0) return { names: [], verified: null };
  const max = options.maxNames ?? MAX_PTR_NAMES_CHECKED;
  const checked = names.slice(0, Math.max(1, max));
  const forward = await Promise.all(checked.map((n) => (family === 4 ? resolver.a(n) : resolver.aaaa(n))));
  let temporary = false;
  for (let i = 0; i < checked.length; i++) {
    const f = forward[i];
    if (!f) continue;
    if (f.ok) {
      if (f.records.some((addr) => normaliseIp(addr) === client))
        return { names, verified: checked[i] ?? null };
    } else if (f.error === 'temporary') temporary = true;
  }
  return temporary ? { names, error: 'temporary' } : { names, verified: null };
}
