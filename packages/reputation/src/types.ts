/**
 * The store behind reputation and address-guessing: decaying scores, sliding-window counters and
 * lockouts, keyed by client network. Every method takes `now` (ms, from the injected clock) so the
 * memory and Redis stores agree and tests never sleep. Implementations are atomic per key.
 */
export interface ReputationStore {
  /**
   * The score of `key` decayed to `now` with half-life `halfLifeMs`; 0 when there is no record.
   */
  score(key: string, now: number, halfLifeMs: number): Promise<number>;
  /**
   * `score`, answered at once: for a store held in process memory, so the reputation check reads
   * its records without a promise (and its evaluation without a turn of the microtask queue). A
   * store over the network leaves it out; the check then awaits `score`.
   */
  scoreNow?(key: string, now: number, halfLifeMs: number): number;
  /**
   * Decays the score of `key` to `now`, adds `delta`, clamps to [`min`, `max`], stores it and returns
   * the new score. The record is forgotten after `ttlMs` without updates.
   */
  addScore(key: string, delta: number, now: number, halfLifeMs: number, bounds: ScoreBounds): Promise<number>;
  /**
   * Records one event at `now` in the sliding window of `key` and returns how many events fall in
   * (`now - windowMs`, `now`], this one included. At most `cap` events are remembered.
   */
  hit(key: string, now: number, windowMs: number, cap: number): Promise<number>;
  /** Marks `key` locked until `until` (ms), keeping the later of an existing lock and this one. */
  lock(key: string, until: number, now: number): Promise<void>;
  /** Until when `key` is locked, or 0 when it is not locked at `now`. */
  lockedUntil(key: string, now: number): Promise<number>;
  /** Releases connections; the store is unusable afterwards. */
  close(): Promise<void>;
}

/** Limits of a stored score and how long an idle record lives. */
export interface ScoreBounds {
  /** The lowest score a record can reach (`minScore`). */
  readonly min: number;
  /** The highest score a record can reach (`maxScore`). */
  readonly max: number;
  /** Milliseconds without an update after which the record is forgotten (decayed to nothing). */
  readonly ttlMs: number;
}

/** A score decayed exponentially from `updated` to `now`: halves every `halfLifeMs`. */
export function decayed(score: number, updated: number, now: number, halfLifeMs: number): number {
  const dt = Math.max(0, now - updated);
  if (!(halfLifeMs > 0)) return score;
  return score * 2 ** (-dt / halfLifeMs);
}
