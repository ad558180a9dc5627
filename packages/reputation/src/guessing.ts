import type { Check, Clock, Logger, Session, Verdict } from '@mxguard/core';
import { defer, next, reject, reply, silentLogger } from '@mxguard/core';
import type { NetworkOptions } from './network.js';
import { networkOf } from './network.js';
import type { ReputationStore } from './types.js';

/**
 * What the recipient validator says: `true` the user exists, `false` it does not (proven: the
 * 550 goes out), `'temporary'` the lookup failed (a 4xx), `'skip'` not ours to judge (another check
 * decides, e.g. relay control for foreign domains).
 */
export type RecipientStatus = boolean | 'temporary' | 'skip';

/** Tells whether a recipient exists; may be async (LDAP, SQL). Must not throw; a throw counts as `temporary`. */
export type RecipientValidator = (
  recipient: string,
  session: Session,
) => RecipientStatus | Promise<RecipientStatus>;

/**
 * A validator from a table of valid users. An entry with `@` matches that address; an entry without
 * matches that local part in any of `domains`. Matching is case-insensitive (RFC 5321 allows
 * case-sensitive local parts, but no mail system in use relies on it, and Postfix folds case in its
 * lookup tables too). Recipients outside `domains` give `'skip'`.
 */
export function tableValidator(users: readonly string[], domains: readonly string[]): RecipientValidator {
  const full = new Set<string>();
  const locals = new Set<string>();
  for (const u of users) {
    const v = u.trim().toLowerCase();
    if (!v) continue;
    if (v.includes('@')) full.add(v);
    else locals.add(v);
  }
  const ours = new Set(domains.map((d) => d.trim().toLowerCase().replace(/\.$/, '')));
  return (recipient) => {
    const r = recipient.trim().toLowerCase();
    const at = r.lastIndexOf('@');
    if (at < 0) return 'skip';
    const domain = r.slice(at + 1);
    if (!ours.has(domain) && ![...full].some((f) => f.endsWith(`@${domain}`))) return 'skip';
    return full.has(r) || locals.has(r.slice(0, at));
  };
}

/** Options of the `address-guessing` check. */
export interface AddressGuessingOptions extends NetworkOptions {
  /** Where the records live (memory or Redis); shared with the other reputation checks. */
  readonly store: ReputationStore;
  /** The clock scores and windows are measured by (a `ManualClock` in tests). */
  readonly clock: Clock;
  /** Where store failures are logged. */
  readonly log?: Logger;
  /** Decides whether a recipient exists: a function or a table (see `tableValidator`). */
  readonly validator: RecipientValidator;
  /**
   * Unknown recipients from one network within `windowMs` that trigger the lockout. A person who
   * mistypes an address makes one or two mistakes and then fixes them; a mailing list with stale
   * addresses sends a handful. Ten distinct failures in ten minutes is a dictionary attack.
   * @default 10
   */
  readonly threshold?: number;
  /** The sliding window in which unknown recipients are counted. @default 600_000 (10 min) */
  readonly windowMs?: number;
  /**
   * How long the network gets 450 4.7.1 for every command once the threshold is passed. An hour
   * makes a dictionary attack slow (at most `threshold` guesses an hour) while a real server that
   * was caught (a forwarder with many stale addresses) delivers its queue after the next retry.
   * @default 3_600_000 (1 h)
   */
  readonly lockoutMs?: number;
  /** Text of the 550 for an unknown recipient; `<rcpt>` is prefixed as Postfix does. @default 'Recipient address rejected: User unknown' */
  readonly unknownText?: string;
}

/**
 * Address-guessing lockout. An unknown recipient is refused with 550 5.1.1 at RCPT time (as
 * Postfix's `reject_unlisted_recipient`, so no bounce is ever generated later), and counted against
 * the client's network in a sliding window; once `threshold` unknown recipients fall in the window,
 * every further command from that network gets 450 4.7.1 for `lockoutMs`. The check's stage is
 * `connect` so the lockout also answers HELO and MAIL when the chain judges them at their own stage.
 */
export function addressGuessing(options: AddressGuessingOptions): Check {
  if (!options.store) throw new TypeError('address-guessing: a store is required');
  if (!options.clock) throw new TypeError('address-guessing: a clock is required');
  if (typeof options.validator !== 'function')
    throw new TypeError('address-guessing: a validator is required');
  const threshold = options.threshold ?? 10;
  const windowMs = options.windowMs ?? 600_000;
  const lockoutMs = options.lockoutMs ?? 3_600_000;
  if (!Number.isInteger(threshold) || threshold < 1)
    throw new TypeError('address-guessing: threshold must be >= 1');
  if (!(windowMs > 0 && lockoutMs > 0))
    throw new TypeError('address-guessing: windowMs and lockoutMs must be > 0');
  const log = options.log ?? silentLogger;
  const net: NetworkOptions = { ipv4Prefix: options.ipv4Prefix ?? 24, ipv6Prefix: options.ipv6Prefix ?? 64 };
  const unknownText = options.unknownText ?? 'Recipient address rejected: User unknown';
  const lockReply = reply(450, '4.7.1', 'Too many unknown recipients from your network; try later');
  const cap = Math.max(threshold, 1) + 1;

  return {
    name: 'address-guessing',
    stage: 'connect',
    async run(session): Promise<Verdict> {
      const key = networkOf(session.clientAddress, net);
      if (!key) return next('client address is not an IP address');
      const now = options.clock.now();
      try {
        const until = await options.store.lockedUntil(key, now);
        if (until > 0) {
          return defer(
            lockReply,
            `network ${key} locked out for address guessing until ${new Date(until).toISOString()}`,
          );
        }
      } catch (err) {
        // The lockout only adds severity; without the store we still judge the recipient itself.
        log.error({ check: 'address-guessing', network: key, err: String(err) }, 'store failed');
      }
      if (session.stage !== 'rcpt' || session.rcptTo === undefined) return next();
      const rcpt = session.rcptTo;
      let status: RecipientStatus;
      try {
        status = await options.validator(rcpt, session);
      } catch (err) {
        status = 'temporary';
        log.error({ check: 'address-guessing', rcpt, err: String(err) }, 'recipient validator failed');
      }
      if (status === 'temporary') {
        // As Postfix when a recipient table is unavailable: 451 4.3.0, never a 5xx.
        return defer(
          reply(451, '4.3.0', `<${safe(rcpt)}>: Temporary lookup failure`),
          'recipient validator failed',
        );
      }
      if (status !== false) return next();
      let count = 0;
      try {
        count = await options.store.hit(key, now, windowMs, cap);
        if (count >= threshold) await options.store.lock(key, now + lockoutMs, now);
      } catch (err) {
        log.error({ check: 'address-guessing', network: key, err: String(err) }, 'store failed');
      }
      const locked = count >= threshold ? '; network locked out' : '';
      return reject(
        reply(550, '5.1.1', `<${safe(rcpt)}>: ${unknownText}`),
        `unknown recipient ${count}/${threshold} from ${key} in ${windowMs / 1000}s${locked}`,
      );
    },
  };
}

/** The recipient as it may appear in a reply: one line, bounded. */
function safe(s: string): string {
  return s.replace(/[\r\n\x00-\x1f]/g, '?').slice(0, 256);
}
