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
}

/**
 * The callout cache in process memory (Postfix's default `address_verify_map` is also a local
 * btree). Expiry uses the `now` each call passes (the injected clock), never timers.
 */
export class MemoryCalloutStore implements CalloutStore {
  private readonly cache: LRUCache<string, CalloutRecord>;

  constructor(options: MemoryCalloutStoreOptions = {}) {
    const max = options.max ?? 50_000;
    if (!Number.isInteger(max) || max < 1) throw new TypeError(`max ${max} must be a positive integer`);
    this.cache = new LRUCache<string, CalloutRecord>({ max });
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
