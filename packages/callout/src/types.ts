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
  /** What the probe learnt about the address. */
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
  | {
      /** The name has records of the type asked. */
      readonly ok: true;
      /** The records found. */
      readonly records: readonly T[];
      /** Seconds the answer may be cached. */
      readonly ttl?: number;
    }
  | {
      /** No records. */
      readonly ok: false;
      /** Whether nothing exists (`notfound`) or nothing is known (`temporary`). */
      readonly error: 'notfound' | 'temporary';
      /** What DNS said, for the log. */
      readonly detail?: string;
    };

/** The part of `@mxguard/dns`'s Resolver the callout uses. */
export interface CalloutResolver {
  /** IPv4 addresses of a name. */
  a(name: string): Promise<CalloutDnsResult<string>>;
  /** IPv6 addresses of a name. */
  aaaa(name: string): Promise<CalloutDnsResult<string>>;
  /** Sorted by priority; a null MX (RFC 7505) has `exchange === ''`. */
  mx(name: string): Promise<
    CalloutDnsResult<{
      /** The preference: lower is tried first. */
      readonly priority: number;
      /** The host name, lower case, without the trailing dot. */
      readonly exchange: string;
    }>
  >;
}

/** Cache status: a probe result, or `todo` while the first probe is under way (Postfix DEL_RCPT_STAT_TODO). */
export type CalloutStatus = ProbeStatus | 'todo';

/**
 * One cache entry, as verify(8)'s `status:probed:updated:text`, plus when it may be forgotten.
 * Times are ms from the injected clock.
 */
export interface CalloutRecord {
  /** What is known of the address (`todo`: the first probe is under way). */
  readonly status: CalloutStatus;
  /** When the outstanding probe started; 0 when none is outstanding. */
  readonly probed: number;
  /** When the result was received; 0 when there is no result yet. */
  readonly updated: number;
  /** The probe's account of the result, for the log and the reply. */
  readonly text: string;
  /** When the store may drop the entry. */
  readonly expires: number;
}

/**
 * Where callout results are kept. `get` returns `undefined` for an entry whose `expires` is at or
 * before `now`. Memory and Redis implementations pass the same conformance suite.
 */
export interface CalloutStore {
  /** The entry of `key`, or `undefined` when there is none or it expired at `now` (ms). */
  get(key: string, now: number): Promise<CalloutRecord | undefined>;
  /** Stores the entry of `key`, kept until its `expires`. */
  set(key: string, record: CalloutRecord, now: number): Promise<void>;
  /** Releases connections; the store is unusable afterwards. */
  close(): Promise<void>;
}
