import { requirePositiveIntegers } from '@mxguard/core';
import { LRUCache } from 'lru-cache';
import type { CalloutRecord, CalloutStore } from '../types.js';

/** Options of the in-memory callout cache. */
export interface MemoryCalloutStoreOptions {
  /**
   * Most addresses kept; the least recently used go first. Only senders of listed domains are
   * ever cached, so this bounds memory even when a flood forges millions of them.
   * @default 50_000
   */
  readonly max?: number;
  /**
   * Bytes the cache may hold, as {@link calloutEntryBytes} counts them (an address and the probed
   * server's reply text); past it the least recently used go first.
   * @default 16777216 (16 MiB)
   */
  readonly maxBytes?: number;
}

/** Bytes an entry is counted as: 256 for the record and lru-cache's slot + 2 a character of key and text. O(1). */
export function calloutEntryBytes(key: string, record: CalloutRecord): number {
  return CALLOUT_OVERHEAD_BYTES + 2 * (key.length + record.text.length);
}
/** Bytes an entry is counted as besides its key and text (see {@link calloutEntryBytes}). */
export const CALLOUT_OVERHEAD_BYTES = 256;

/**
 * The callout cache in process memory (Postfix's default `address_verify_map` is also a local
 * btree). Expiry uses the `now` each call passes (the injected clock), never timers.
 */
export class MemoryCalloutStore implements CalloutStore {
  private readonly cache: LRUCache<string, CalloutRecord>;

  constructor(options: MemoryCalloutStoreOptions = {}) {
    const max = options.max ?? 50_000;
    const maxBytes = options.maxBytes ?? 16 * 1024 * 1024;
    requirePositiveIntegers({ max, maxBytes });
    // An entry larger than the whole bound is not kept (lru-cache refuses it): the probe runs again.
    this.cache = new LRUCache<string, CalloutRecord>({
      max,
      maxSize: maxBytes,
      sizeCalculation: (record, key) => calloutEntryBytes(key, record),
    });
  }

  /** Entries held and their bytes as counted against `maxBytes`. */
  get size(): {
    /** Entries held. */
    readonly entries: number;
    /** Their bytes, against `maxBytes`. */
    readonly bytes: number;
  } {
    return { entries: this.cache.size, bytes: this.cache.calculatedSize };
  }

  async get(key: string, now: number): Promise<CalloutRecord | undefined> {
    const r = this.cache.get(key);
    if (!r) return undefined;
    if (r.expires <= now) {
      this.cache.delete(key);
      return undefined;
    }
    return r;
  }

  async set(key: string, record: CalloutRecord, now: number): Promise<void> {
    if (record.expires <= now) this.cache.delete(key);
    else this.cache.set(key, record);
  }

  async close(): Promise<void> {
    this.cache.clear();
  }
}
