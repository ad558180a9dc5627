import { requirePositiveIntegers } from '@mxguard/core';
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
  /**
   * Bytes the records may hold, as {@link reputationEntryBytes} counts them (keys can be long: the
   * address-guessing check keys by sender); past it the least recently used go first.
   * @default 33554432 (32 MiB: the 100,000 default records of typical length fit)
   */
  readonly maxBytes?: number;
}

/**
 * Bytes a record is counted as: 256 for the record and lru-cache's slot (measured 250 in all with
 * a `net:a.b.c.0/24` key, bench/memory.ts) + 2 a key character + 16 a time in a window. O(1).
 */
export function reputationEntryBytes(key: string, entry: { readonly times?: readonly number[] }): number {
  return REPUTATION_OVERHEAD_BYTES + 2 * key.length + 16 * (entry.times?.length ?? 0);
}
/** Bytes a record is counted as besides its key and times (see {@link reputationEntryBytes}). */
export const REPUTATION_OVERHEAD_BYTES = 256;

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
    const maxBytes = options.maxBytes ?? 32 * 1024 * 1024;
    requirePositiveIntegers({ max, maxBytes });
    this.cache = new LRUCache<string, Entry>({
      max,
      maxSize: maxBytes,
      sizeCalculation: (entry, key) => reputationEntryBytes(key, entry as { times?: number[] }),
    });
  }

  /** Records held and their bytes as counted against `maxBytes`. */
  get size(): {
    /** Records held. */
    readonly entries: number;
    /** Their bytes, as counted against `maxBytes`. */
    readonly bytes: number;
  } {
    return { entries: this.cache.size, bytes: this.cache.calculatedSize };
  }

  async score(key: string, now: number, halfLifeMs: number): Promise<number> {
    return this.scoreNow(key, now, halfLifeMs);
  }

  scoreNow(key: string, now: number, halfLifeMs: number): number {
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
