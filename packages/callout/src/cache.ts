import type { CalloutRecord, CalloutStatus, ProbeResult } from './types.js';

const SECOND = 1000;
const HOUR = 3600 * SECOND;
const DAY = 24 * HOUR;

/**
 * The cache's times, named and defaulted as Postfix's verify(8) parameters (postconf -d, Postfix
 * 3.x), in ms.
 */
export interface VerifyTimes {
  /** `address_verify_positive_expire_time`: a good entry is kept this long. @default 31 days */
  readonly positiveExpireMs?: number;
  /** `address_verify_positive_refresh_time`: a good entry is re-probed after this. @default 7 days */
  readonly positiveRefreshMs?: number;
  /** `address_verify_negative_expire_time`: a failed entry is kept this long. @default 3 days */
  readonly negativeExpireMs?: number;
  /** `address_verify_negative_refresh_time`: an unknown-user entry is re-probed after this. @default 3 hours */
  readonly negativeRefreshMs?: number;
  /**
   * A temporary or inconclusive result says nothing about the address, so it is re-probed sooner
   * than Postfix does (Postfix treats it as negative: 3 h). Not below `probeTtlMs`.
   * @default 1000 s
   */
  readonly temporaryRefreshMs?: number;
  /**
   * verify.c's `PROBE_TTL`: no second probe for the same address within this time, and a probe
   * that has not answered by then is presumed lost.
   * @default 1000 s
   */
  readonly probeTtlMs?: number;
}

/** VerifyTimes with every default filled in. */
export type ResolvedTimes = Required<VerifyTimes>;

/** Fills in the Postfix defaults and checks the times make sense. */
export function verifyTimes(t: VerifyTimes = {}): ResolvedTimes {
  const r: ResolvedTimes = {
    positiveExpireMs: t.positiveExpireMs ?? 31 * DAY,
    positiveRefreshMs: t.positiveRefreshMs ?? 7 * DAY,
    negativeExpireMs: t.negativeExpireMs ?? 3 * DAY,
    negativeRefreshMs: t.negativeRefreshMs ?? 3 * HOUR,
    temporaryRefreshMs: t.temporaryRefreshMs ?? 1000 * SECOND,
    probeTtlMs: t.probeTtlMs ?? 1000 * SECOND,
  };
  for (const [k, v] of Object.entries(r)) {
    if (!Number.isFinite(v) || v <= 0) throw new TypeError(`callout: ${k} must be a positive number of ms`);
  }
  if (r.positiveRefreshMs > r.positiveExpireMs)
    throw new TypeError('callout: positive refresh exceeds expire time');
  if (r.negativeRefreshMs > r.negativeExpireMs)
    throw new TypeError('callout: negative refresh exceeds expire time');
  return r;
}

function expired(rec: CalloutRecord, now: number, t: ResolvedTimes): boolean {
  if (rec.updated === 0) return true;
  const life = rec.status === 'exists' ? t.positiveExpireMs : t.negativeExpireMs;
  return rec.updated + life < now;
}

function refreshDue(status: CalloutStatus, updated: number, now: number, t: ResolvedTimes): boolean {
  if (status === 'todo' || updated === 0) return true;
  const after =
    status === 'exists'
      ? t.positiveRefreshMs
      : status === 'unknown-user'
        ? t.negativeRefreshMs
        : Math.max(t.temporaryRefreshMs, t.probeTtlMs);
  return updated + after < now;
}

/** What the cache says about an address at `now`, and whether to probe it. */
export interface Consultation {
  /** The status to answer with now (`todo`: nothing known yet). */
  readonly status: CalloutStatus;
  /** The cached account of the result, for the reply (`Address verification in progress` while nothing is known). */
  readonly text: string;
  /** True when a probe should be sent (refresh due and none outstanding within `probeTtlMs`). */
  readonly probe: boolean;
  /** The entry to use as the base of updates (`undefined` when unusable). */
  readonly record: CalloutRecord | undefined;
}

/**
 * verify.c's query: an entry is unusable when missing, or when no probe is outstanding and it has
 * expired; then the address is `todo`. A probe is due when none was sent in the last `probeTtlMs`
 * and the entry needs a refresh. A stale good entry keeps answering while it is refreshed.
 */
export function consult(rec: CalloutRecord | undefined, now: number, t: ResolvedTimes): Consultation {
  // `probed === 0` means no probe is outstanding (whatever the clock says, even near the epoch).
  const idle = (probed: number) => probed === 0 || now - probed > t.probeTtlMs;
  const usable = rec !== undefined && !(idle(rec.probed) && expired(rec, now, t));
  const base = usable ? rec : undefined;
  const status = base?.status ?? 'todo';
  const text = base?.text ?? 'Address verification in progress';
  const probed = base?.probed ?? 0;
  const probe = idle(probed) && refreshDue(status, base?.updated ?? 0, now, t);
  return { status, text, probe, record: base };
}

function expiryOf(status: CalloutStatus, probed: number, updated: number, t: ResolvedTimes): number {
  const life = updated === 0 ? 0 : updated + (status === 'exists' ? t.positiveExpireMs : t.negativeExpireMs);
  return Math.max(life, probed === 0 ? 0 : probed + t.probeTtlMs);
}

/** The entry written before a probe starts: the old result (if usable) with `probed = now`. */
export function pending(base: CalloutRecord | undefined, now: number, t: ResolvedTimes): CalloutRecord {
  const status = base?.status ?? 'todo';
  const updated = base?.updated ?? 0;
  return {
    status,
    probed: now,
    updated,
    text: base?.text ?? 'Address verification in progress',
    expires: expiryOf(status, now, updated, t),
  };
}

/**
 * verify.c's update: a result replaces the entry, except that a failed probe never clobbers a
 * good entry before it expires ("As long as some probes succeed the address will remain cached as
 * OK"): the good entry is kept as it is. Returns the entry to store.
 */
export function merge(
  current: CalloutRecord | undefined,
  result: ProbeResult,
  now: number,
  t: ResolvedTimes,
): CalloutRecord {
  if (
    result.status !== 'exists' &&
    current?.status === 'exists' &&
    current.updated > 0 &&
    current.updated + t.positiveExpireMs >= now
  ) {
    return current;
  }
  return {
    status: result.status,
    probed: 0,
    updated: now,
    text: result.text,
    expires: expiryOf(result.status, 0, now, t),
  };
}
