import { LRUCache } from 'lru-cache';
import type { ReputationStore, ScoreBounds } from '../types.js';
import { decayed } from '../types.js';

/** Options of the in-memory reputation store. */
export interface MemoryReputationStoreOptions {
  /**
   * Most records kept (scores, windows and locks together); the least recently used go first, so a
   * flood of new networks cannot exhaust memory.
   * @default 100_000
   */
  readonly max?: number;
}

type Entry =
  | { kind: 'score'; score: number; updated: number; expires: number }
  | { kind: 'window'; times: number[]; expires: number }
  | { kind: 'lock'; until: number };

/**
 * Reputation in process memory, bounded by an LRU. Expiry is computed from the `now` each call
 * passes (the injected clock), not from lru-cache's timers, so it agrees with the Redis store and
 * tests never sleep. For one MX host; use the Redis store when several share the records.
 */
export class MemoryReputationStore implements ReputationStore {
  private readonly cache: LRUCache<string, Entry>;

  constructor(options: MemoryReputationStoreOptions = {}) {
    const max = options.max ?? 100_000;
    if (!Number.isInteger(max) || max < 1) throw new TypeError(`max ${max} must be a positive integer`);
    this.cache = new LRUCache<string, Entry>({ max });
  }

  async score(key: string, now: number, halfLifeMs: number): Promise<number> {
    const e = this.cache.get(`s:${key}`);
    if (e?.kind !== 'score' || e.expires <= now) return 0;
    return decayed(e.score, e.updated, now, halfLifeMs);
  }

  async addScore(
    key: string,
    delta: number,
    now: number,
    halfLifeMs: number,
    bounds: ScoreBounds,
  ): Promise<number> {
    const k = `s:${key}`;
    const e = this.cache.get(k);
    const base =
      e && e.kind === 'score' && e.expires > now ? decayed(e.score, e.updated, now, halfLifeMs) : 0;
    const score = Math.min(bounds.max, Math.max(bounds.min, base + delta));
    this.cache.set(k, { kind: 'score', score, updated: now, expires: now + bounds.ttlMs });
    return score;
  }

  async hit(key: string, now: number, windowMs: number, cap: number): Promise<number> {
    const k = `w:${key}`;
    const e = this.cache.get(k);
    const times = e && e.kind === 'window' ? e.times.filter((t) => t > now - windowMs) : [];
    times.push(now);
    while (times.length > cap) times.shift();
    this.cache.set(k, { kind: 'window', times, expires: now + windowMs });
    return times.length;
  }

  async lock(key: string, until: number, now: number): Promise<void> {
    const k = `l:${key}`;
    const e = this.cache.get(k);
    const current = e && e.kind === 'lock' && e.until > now ? e.until : 0;
    this.cache.set(k, { kind: 'lock', until: Math.max(current, until) });
  }

  async lockedUntil(key: string, now: number): Promise<number> {
    const e = this.cache.get(`l:${key}`);
    return e && e.kind === 'lock' && e.until > now ? e.until : 0;
  }

  async close(): Promise<void> {
    this.cache.clear();
  }
}
