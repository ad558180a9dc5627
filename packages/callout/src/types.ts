/**
 * Types of the callout: the probe port, the DNS it needs, and the verify(8)-style cache records.
 * The DNS types mirror `@mxguard/dns`'s Resolver structurally, so its `DnsResolver` and
 * `FakeResolver` plug in as they are.
 */

/** What a probe learnt about an address. */
export type ProbeStatus =
  /** RCPT TO was accepted (2xx). */
  | 'exists'
  /** RCPT TO got a 5xx that says the mailbox does not exist (5.1.x, or 550/551/553 without an enhanced code). */
  | 'unknown-user'
  /** Every MX host failed temporarily: connection refused or timed out, 4xx, the probe did not finish. */
  | 'temporary'
  /**
   * An MX host answered, but not about the mailbox: it refused our probe sender or our IP (5xx at
   * MAIL FROM, a 5.7.x at RCPT). Proves nothing about the address, so it never rejects.
   */
  | 'inconclusive';

/** The outcome of one probe. */
export interface ProbeResult {
  readonly status: ProbeStatus;
  /** What happened, for the log and the reply: `host mx.example[192.0.2.1] said: 550 5.1.1 ...`. Printable, bounded. */
  readonly text: string;
}

/** One address to probe, from the MX of a listed domain. */
export interface ProbeTarget {
  /** The MX host name (for the log). */
  readonly host: string;
  /** The IP address to connect to: already checked against the forbidden ranges. */
  readonly address: string;
}

/** What a probe is told besides the targets and the address. */
export interface ProbeOptions {
  /** TCP port. @default 25 */
  readonly port: number;
  /** Our EHLO name. */
  readonly helo: string;
  /** The MAIL FROM of the probe, `''` for the null sender. */
  readonly sender: string;
  /** Aborted when the probe must stop (its overall time is up). */
  readonly signal: AbortSignal;
}

/**
 * Asks the targets, in order, whether `address` exists. Injected so users and tests can replace
 * the SMTP conversation; the default is `smtpProbe`. Must not throw; a throw counts as `temporary`.
 */
export type Probe = (
  targets: readonly ProbeTarget[],
  address: string,
  options: ProbeOptions,
) => Promise<ProbeResult>;

/** A DNS answer, as `@mxguard/dns` gives it. */
export type CalloutDnsResult<T> =
  | { readonly ok: true; readonly records: readonly T[]; readonly ttl?: number }
  | { readonly ok: false; readonly error: 'notfound' | 'temporary'; readonly detail?: string };

/** The part of `@mxguard/dns`'s Resolver the callout uses. */
export interface CalloutResolver {
  a(name: string): Promise<CalloutDnsResult<string>>;
  aaaa(name: string): Promise<CalloutDnsResult<string>>;
  /** Sorted by priority; a null MX (RFC 7505) has `exchange === ''`. */
  mx(name: string): Promise<CalloutDnsResult<{ readonly priority: number; readonly exchange: string }>>;
}

/** Cache status: a probe result, or `todo` while the first probe is under way (Postfix DEL_RCPT_STAT_TODO). */
export type CalloutStatus = ProbeStatus | 'todo';

/**
 * One cache entry, as verify(8)'s `status:probed:updated:text`, plus when it may be forgotten.
 * Times are ms from the injected clock.
 */
export interface CalloutRecord {
  readonly status: CalloutStatus;
  /** When the outstanding probe started; 0 when none is outstanding. */
  readonly probed: number;
  /** When the result was received; 0 when there is no result yet. */
  readonly updated: number;
  readonly text: string;
  /** When the store may drop the entry. */
  readonly expires: number;
}

/**
 * Where callout results are kept. `get` returns `undefined` for an entry whose `expires` is at or
 * before `now`. Memory and Redis implementations pass the same conformance suite.
 */
export interface CalloutStore {
  get(key: string, now: number): Promise<CalloutRecord | undefined>;
  set(key: string, record: CalloutRecord, now: number): Promise<void>;
  /** Releases connections; the store is unusable afterwards. */
  close(): Promise<void>;
}
