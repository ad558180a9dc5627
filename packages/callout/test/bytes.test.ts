import { describe, expect, it } from 'vitest';
import { expectHeldWithin, storeMemory } from '../../../testing/heap.js';
import { calloutEntryBytes, MemoryCalloutStore } from '../src/index.js';

// Filled in a process of its own with ten times the byte bound's worth of distinct entries (a
// 1000-character address and a 510-character reply text each), with the default count (50,000),
// so only the byte bound can stop them; heap measured after a full GC, with 2 MiB of margin for
// the code's own allocations. Before the byte bound, all 12,804 were kept (about 25 MB).
const bound = 4 * 1024 * 1024;
const margin = 2 * 1024 * 1024;

describe('callout memory cache: bounded in bytes', () => {
  it('counts 256 an entry + 2 a character of address and reply text', () => {
    const r = { status: 'exists' as const, probed: 0, updated: 1, text: '250 2.1.5 Ok', expires: 2 };
    expect(calloutEntryBytes('a@example.com', r)).toBe(256 + 2 * (13 + 12));
  });

  it('holds entries within maxBytes, heap measured, keeping the newest', async () => {
    const m = await storeMemory('callout', bound, 1000);
    expect(m.held.entries).toBe(Math.floor(bound / m.per));
    expectHeldWithin(m, bound, margin);
  }, 150_000);

  it('refuses a byte bound that is not a positive integer', () => {
    expect(() => new MemoryCalloutStore({ maxBytes: -1 })).toThrow(
      /maxBytes must be a positive integer, got -1/,
    );
  });
});
