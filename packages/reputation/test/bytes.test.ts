import { describe, expect, it } from 'vitest';
import { expectHeldWithin, storeMemory } from '../../../testing/heap.js';
import { MemoryReputationStore, reputationEntryBytes } from '../src/index.js';

// Filled in a process of its own with ten times the byte bound's worth of distinct records, with
// the default count (100,000), so only the byte bound can stop them; heap measured after a full
// GC, with 2 MiB of margin over the bound for the code's own allocations. Before the byte bound,
// 18,559 scores of 1000-character keys were all kept (about 20 MB).
const bound = 4 * 1024 * 1024;
const margin = 2 * 1024 * 1024;

describe('reputation memory store: bounded in bytes', () => {
  it('counts 256 a record + 2 a key character + 16 a time of a window', () => {
    expect(reputationEntryBytes('s:net:192.0.2.0/24', {})).toBe(256 + 2 * 18);
    expect(reputationEntryBytes('w:x', { times: [1, 2, 3] })).toBe(256 + 6 + 48);
  });

  for (const [kind, keyLength] of [
    ['reputation-scores', 1000],
    ['reputation-windows', 1000],
  ] as const) {
    it(`holds ${kind.slice(11)} within maxBytes, heap measured, keeping the newest`, async () => {
      const m = await storeMemory(kind, bound, keyLength);
      expect(m.inserted).toBeGreaterThan(10 * m.held.entries - 10);
      expect(m.held.bytes).toBeGreaterThan(bound - m.per);
      expectHeldWithin(m, bound, margin);
    }, 150_000);
  }

  it('refuses a byte bound that is not a positive integer', () => {
    expect(() => new MemoryReputationStore({ maxBytes: 0 })).toThrow(
      /maxBytes must be a positive integer, got 0/,
    );
  });
});
