/**
 * The greylist state machine, pure: `(records, now, policy) -> (decision, new records)`. No clock,
 * no store: the stores run this function (the memory store directly, the Redis store as the same
 * steps in Lua) so every store decides alike. The algorithm is postgrey's (`smtpd_access_policy` in
 * /usr/sbin/postgrey 1.37), with times in milliseconds.
 */

/** What the greylist remembers about one (client network, sender, recipient) triplet. */
export interface TripletRecord {
  /** When the current greylisting period began (ms since the epoch). */
  readonly first: number;
  /** When the triplet was last seen (ms). Never less than `first`. */
  readonly last: number;
  /** Delivery attempts seen for this triplet (for statistics and reputation). */
  readonly count: number;
}

/**
 * What the greylist remembers about one client address for the auto-whitelist (postgrey's
 * `--auto-whitelist-clients`): how many triplets it passed, counted at most once an interval.
 */
export interface ClientRecord {
  /** Successful retries counted so far. */
  readonly count: number;
  /** When the count last moved (ms). */
  readonly last: number;
}

/** The timing of the greylist. Defaults are postgrey's. */
export interface GreylistPolicy {
  /** How long a new triplet is refused (ms). @default 300_000 (postgrey `--delay=300`) */
  readonly delay: number;
  /**
   * How long after first contact the first successful retry may come (ms); a later retry starts the
   * delay over. @default 172_800_000 (2 days, postgrey `--retry-window=2`)
   */
  readonly retryWindow: number;
  /** A record not seen for this long is forgotten (ms). @default 3_024_000_000 (35 days, postgrey `--max-age=35`) */
  readonly maxAge: number;
  /**
   * A client that passed this many triplets is let through without greylisting; 0 turns the
   * auto-whitelist off. @default 5 (postgrey `--auto-whitelist-clients=5`)
   */
  readonly awlClients: number;
  /** A client's pass count moves at most once in this interval (ms). @default 3_600_000 (postgrey: one hour) */
  readonly awlInterval: number;
}

/** postgrey's defaults. */
export const DEFAULT_POLICY: GreylistPolicy = Object.freeze({
  delay: 300_000,
  retryWindow: 2 * 86_400_000,
  maxAge: 35 * 86_400_000,
  awlClients: 5,
  awlInterval: 3_600_000,
});

/**
 * What happened, for the log, for counters and for a reputation module:
 * - `new`: first contact (or the record had passed `maxAge`): refused.
 * - `early`: retried before the delay ran out: refused.
 * - `expired-restart`: the first retry came after the retry window (a failed retry, worth
 *   reporting): the delay starts over, refused.
 * - `passed`: retried in time, or a triplet that passed before: let through.
 * - `whitelisted-client`: the client address passed enough triplets: let through unseen.
 * - `allowlisted`: an allowlist matched (set by the check, never by the machine).
 */
export type GreylistOutcome =
  | 'new'
  | 'early'
  | 'expired-restart'
  | 'passed'
  | 'whitelisted-client'
  | 'allowlisted';

/** The records one decision reads. */
export interface GreylistRecords {
  /** The triplet's record, if the store has one. */
  readonly triplet?: TripletRecord | undefined;
  /** The client's auto-whitelist record, if the store has one. */
  readonly client?: ClientRecord | undefined;
}

/** The result of one decision. */
export interface GreylistDecision {
  /** What the state machine decided (allowlisting happens before it is asked). */
  readonly outcome: Exclude<GreylistOutcome, 'allowlisted'>;
  /** Seconds until a retry would pass (rounded up); 0 when passing. */
  readonly retryIn: number;
  /** True when this decision is the triplet's first pass: `delayedMs` says how long it waited. */
  readonly firstPass: boolean;
  /** On a first pass: how long the sender was delayed (ms). 0 otherwise. */
  readonly delayedMs: number;
  /** True when this decision made the client reach the auto-whitelist threshold. */
  readonly clientWhitelisted: boolean;
}

/** A decision and the records to store (`undefined`: leave that record as it is). */
export interface GreylistStep {
  /** What was decided. */
  readonly decision: GreylistDecision;
  /** The triplet's record to store (undefined: leave it as it is). */
  readonly triplet?: TripletRecord | undefined;
  /** The client's record to store (undefined: leave it as it is). */
  readonly client?: ClientRecord | undefined;
}

/**
 * One greylisting decision, as postgrey makes it:
 * 1. A client whose auto-whitelist count reached `awlClients` passes; its count moves (statistics)
 *    at most once an `awlInterval`. The triplet is not touched.
 * 2. A triplet whose last and first sightings are `delay` apart passed before and passes again.
 *    One not yet passed whose first sighting is older than `retryWindow` starts over.
 * 3. The triplet passes once `delay` has run since its first sighting; its first pass counts for the
 *    client's auto-whitelist (once an `awlInterval`).
 *
 * Time never runs backwards in a record: the effective time is `max(now, last seen)`, so a caller
 * with a slow clock (an MX host behind the others) neither rewinds a record nor shortens a delay.
 */
export function greylistStep(
  records: GreylistRecords,
  now: number,
  policy: GreylistPolicy = DEFAULT_POLICY,
): GreylistStep {
  const { delay, retryWindow, maxAge, awlClients, awlInterval } = policy;
  let client = live(records.client, now, maxAge);
  if (awlClients > 0 && client && client.count >= awlClients) {
    const t = Math.max(now, client.last);
    const moved = t >= client.last + awlInterval;
    return {
      decision: {
        outcome: 'whitelisted-client',
        retryIn: 0,
        firstPass: false,
        delayedMs: 0,
        clientWhitelisted: false,
      },
      client: moved ? { count: client.count + 1, last: t } : undefined,
    };
  }
  const old = live(records.triplet, now, maxAge);
  const t = Math.max(now, old?.last ?? now);
  let first = old?.first ?? t;
  let outcome: GreylistDecision['outcome'] = old ? 'early' : 'new';
  const passedBefore = old !== undefined && old.last - old.first >= delay;
  if (old && !passedBefore && t - first > retryWindow) {
    first = t;
    outcome = 'expired-restart';
  }
  const triplet: TripletRecord = { first, last: t, count: (old?.count ?? 0) + 1 };
  const left = delay - (t - first);
  if (left > 0) {
    return {
      decision: {
        outcome,
        retryIn: Math.ceil(left / 1000),
        firstPass: false,
        delayedMs: 0,
        clientWhitelisted: false,
      },
      triplet,
    };
  }
  let clientWhitelisted = false;
  let newClient: ClientRecord | undefined;
  if (!passedBefore && awlClients > 0) {
    const ct = Math.max(t, client?.last ?? t);
    if (!client || ct >= client.last + awlInterval) {
      client = { count: (client?.count ?? 0) + 1, last: ct };
      newClient = client;
      clientWhitelisted = client.count === awlClients;
    }
  }
  return {
    decision: {
      outcome: 'passed',
      retryIn: 0,
      firstPass: !passedBefore,
      delayedMs: passedBefore ? 0 : t - first,
      clientWhitelisted,
    },
    triplet,
    client: newClient,
  };
}

/** A record not seen for `maxAge` is gone, as postgrey's nightly cleanup would have removed it. */
function live<R extends { readonly last: number }>(
  r: R | undefined,
  now: number,
  maxAge: number,
): R | undefined {
  return r && now - r.last <= maxAge ? r : undefined;
}

/** Reads a policy from partial options in seconds (as config files write them), with clear errors. */
export function policyFromOptions(options: Record<string, unknown>, check = 'greylist'): GreylistPolicy {
  const seconds = (key: string, fallbackMs: number, min = 0): number => {
    const v = options[key];
    if (v === undefined) return fallbackMs;
    if (typeof v !== 'number' || !Number.isFinite(v) || v < min) {
      throw new TypeError(`${check}: ${key} must be a number of seconds >= ${min}, got ${JSON.stringify(v)}`);
    }
    return Math.round(v * 1000);
  };
  const awl = options.autoWhitelistClients;
  if (awl !== undefined && (typeof awl !== 'number' || !Number.isInteger(awl) || awl < 0)) {
    throw new TypeError(`${check}: autoWhitelistClients must be an integer >= 0, got ${JSON.stringify(awl)}`);
  }
  const p: GreylistPolicy = {
    delay: seconds('delay', DEFAULT_POLICY.delay),
    retryWindow: seconds('retryWindow', DEFAULT_POLICY.retryWindow),
    maxAge: seconds('maxAge', DEFAULT_POLICY.maxAge, 1),
    awlClients: (awl as number | undefined) ?? DEFAULT_POLICY.awlClients,
    awlInterval: seconds('autoWhitelistInterval', DEFAULT_POLICY.awlInterval),
  };
  if (p.retryWindow < p.delay) {
    throw new TypeError(`${check}: retryWindow (${p.retryWindow / 1000}s) must not be shorter than delay`);
  }
  if (p.maxAge < p.retryWindow) {
    throw new TypeError(`${check}: maxAge (${p.maxAge / 1000}s) must not be shorter than retryWindow`);
  }
  return p;
}
