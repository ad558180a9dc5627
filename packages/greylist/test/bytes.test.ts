import { describe, expect, it } from 'vitest';
import { expectHeldWithin, storeMemory } from '../../../testing/heap.js';
import { clientBytes, memoryStore, TRIPLET_OVERHEAD_BYTES, tripletBytes } from '../src/index.js';

// Each store is filled in a process of its own with ten times its byte bound's worth of distinct
// entries whose keys are 1000 characters (a long sender and recipient), with the default entry
// counts (100,000 triplets, 50,000 clients), so only the byte bound can stop them. Heap measured
// after a full GC. The margin over the bound (2 MiB) covers the code's own allocations. Before the
// byte bound, the counts let these grow to 16,540 and 18,592 entries: about 21 MB of heap.
const bound = 4 * 1024 * 1024;
const margin = 2 * 1024 * 1024;

describe('greylist memory store: bounded in bytes', () => {
  it('counts a triplet as 512 + 2 a key character, a client as 256 + 2 a character', () => {
    expect(tripletBytes('')).toBe(TRIPLET_OVERHEAD_BYTES);
    expect(tripletBytes('a'.repeat(1000))).toBe(2512);
    expect(clientBytes('192.0.2.1')).toBe(274);
  });

  it('holds triplets within maxTripletBytes, heap measured, keeping the newest', async () => {
    const m = await storeMemory('greylist-triplets', bound, 1000);
    expect(m.inserted).toBeGreaterThan(16_000);
    expect(m.held.entries).toBe(Math.floor(bound / m.per));
    expectHeldWithin(m, bound, margin);
  }, 150_000);

  it('holds auto-whitelist clients within maxClientBytes, heap measured, keeping the newest', async () => {
    const m = await storeMemory('greylist-clients', bound, 1000);
    expect(m.held.entries).toBe(Math.floor(bound / m.per));
    expectHeldWithin(m, bound, margin);
  }, 150_000);

  it('refuses a byte bound that is not a positive integer', () => {
    expect(() => memoryStore({ maxTripletBytes: 0 })).toThrow(/maxTripletBytes must be a positive integer/);
    expect(() => memoryStore({ maxClientBytes: 1.5 })).toThrow(/maxClientBytes must be a positive integer/);
  });
});
