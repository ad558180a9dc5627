/**
 * The Resolver port: the five record types the checks need, answers with TTLs, failures typed and
 * returned (never thrown), as mailauth's resolver wrapper does. Checks never see a `node:dns` error.
 */

/** The record types the checks ask for. */
export type RecordType = 'A' | 'AAAA' | 'MX' | 'PTR' | 'TXT';

/** One MX record. A null MX (RFC 7505, `MX 0 .`) has `exchange === ''`. */
export interface MxRecord {
  /** The preference: lower is tried first. */
  readonly priority: number;
  /** Lower case, without the trailing dot; `''` for the root (null MX). */
  readonly exchange: string;
}

/**
 * Why a lookup gave no records.
 * - `notfound`: the name does not exist (NXDOMAIN) or has no record of that type (NODATA). A
 *   statement of fact by the authoritative servers: checks may act on it.
 * - `temporary`: SERVFAIL, timeout, refused, network error, overload. Says nothing about the
 *   name: at most a 4xx (DESIGN principle 2).
 */
export type DnsError = 'notfound' | 'temporary';

/** The answer of one lookup. */
export type DnsResult<T> =
  | {
      /** The name has records of the type asked. */
      readonly ok: true;
      /** The records found (a name without records of the type is `ok: false`, `notfound`: NODATA). */
      readonly records: readonly T[];
      /** Seconds the answer may be cached (the smallest record TTL, or the configured default). */
      readonly ttl: number;
    }
  | {
      /** No records: the lookup failed or found nothing. */
      readonly ok: false;
      /** Whether nothing exists (`notfound`) or nothing is known (`temporary`). */
      readonly error: DnsError;
      /** What happened, for the log: `NXDOMAIN`, `NODATA`, `SERVFAIL`, `TIMEOUT`, ... */
      readonly detail: string;
    };

/** The DNS every check uses. Implementations: `DnsResolver` (node:dns) and `FakeResolver` (tests). */
export interface Resolver {
  /** IPv4 addresses of a name. */
  a(name: string): Promise<DnsResult<string>>;
  /** IPv6 addresses of a name. */
  aaaa(name: string): Promise<DnsResult<string>>;
  /** MX records of a domain, sorted by priority. */
  mx(name: string): Promise<DnsResult<MxRecord>>;
  /** PTR names of an IP address (the resolver builds the in-addr.arpa / ip6.arpa name). */
  ptr(ip: string): Promise<DnsResult<string>>;
  /** TXT records of a name, each record's strings joined. */
  txt(name: string): Promise<DnsResult<string>>;
}

/** A successful answer. */
export function found<T>(records: readonly T[], ttl: number): DnsResult<T> {
  return { ok: true, records, ttl };
}

/** A failed answer. */
export function failed<T>(error: DnsError, detail: string): DnsResult<T> {
  return { ok: false, error, detail };
}
