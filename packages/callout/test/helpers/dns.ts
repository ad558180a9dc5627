import type { CalloutDnsResult, CalloutResolver } from '@mxguard/callout';

type Zone = Record<string, { MX?: { priority: number; exchange: string }[]; A?: string[]; AAAA?: string[] }>;

/** An inline resolver from a table, with a log of queries. Absent names are NXDOMAIN. */
export function zoneResolver(
  zone: Zone,
  temporary: readonly string[] = [],
): CalloutResolver & { calls: string[] } {
  const calls: string[] = [];
  function answer<T>(name: string, type: 'MX' | 'A' | 'AAAA'): CalloutDnsResult<T> {
    calls.push(`${type} ${name}`);
    if (temporary.includes(name)) return { ok: false, error: 'temporary', detail: 'SERVFAIL' };
    const recs = zone[name]?.[type] as T[] | undefined;
    if (!recs || recs.length === 0) return { ok: false, error: 'notfound', detail: 'NXDOMAIN' };
    return { ok: true, records: recs, ttl: 300 };
  }
  return {
    calls,
    a: async (n) => answer<string>(n, 'A'),
    aaaa: async (n) => answer<string>(n, 'AAAA'),
    mx: async (n) => answer<{ priority: number; exchange: string }>(n, 'MX'),
  };
}
