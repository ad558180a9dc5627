import type { ReputationStore } from '@mxguard/reputation';
import { afterAll, beforeEach, describe, expect, it } from 'vitest';

const HL = 3_600_000;
const bounds = { min: -10, max: 100, ttlMs: 10 * HL };

/**
 * The conformance suite every ReputationStore runs. `make` gives a fresh, empty store per test
 * (a new key prefix for Redis); time is the `now` argument, never the wall clock.
 */
export function reputationStoreSuite(
  name: string,
  make: () => Promise<ReputationStore> | ReputationStore,
): void {
  describe(`ReputationStore conformance: ${name}`, () => {
    let store: ReputationStore;
    const opened: ReputationStore[] = [];
    beforeEach(async () => {
      store = await make();
      opened.push(store);
    });
    afterAll(async () => {
      for (const s of opened) await s.close();
    });

    it('an unknown key scores 0', async () => {
      expect(await store.score('192.0.2.0/24', 1000, HL)).toBe(0);
    });

    it('adds points and decays them with the half-life', async () => {
      expect(await store.addScore('n', 8, 0, HL, bounds)).toBe(8);
      expect(await store.score('n', HL, HL)).toBeCloseTo(4, 9);
      expect(await store.score('n', 3 * HL, HL)).toBeCloseTo(1, 9);
      // Adding decays first, then adds.
      expect(await store.addScore('n', 2, HL, HL, bounds)).toBeCloseTo(6, 9);
      expect(await store.score('n', HL, HL)).toBeCloseTo(6, 9);
    });

    it('clamps to the bounds', async () => {
      expect(await store.addScore('hi', 1000, 0, HL, bounds)).toBe(100);
      expect(await store.addScore('lo', -1000, 0, HL, bounds)).toBe(-10);
    });

    it('forgets a record idle longer than its ttl', async () => {
      await store.addScore('t', 50, 0, HL, { ...bounds, ttlMs: 1000 });
      expect(await store.score('t', 999, HL)).toBeGreaterThan(49);
      expect(await store.score('t', 1000, HL)).toBe(0);
      expect(await store.addScore('t', 1, 2000, HL, bounds)).toBe(1);
    });

    it('keys are independent', async () => {
      await store.addScore('a', 5, 0, HL, bounds);
      expect(await store.score('b', 0, HL)).toBe(0);
    });

    it('counts hits in a sliding window', async () => {
      expect(await store.hit('w', 0, 1000, 50)).toBe(1);
      expect(await store.hit('w', 500, 1000, 50)).toBe(2);
      expect(await store.hit('w', 999, 1000, 50)).toBe(3);
      // At 1000 the hit of time 0 has left the window (now - window, now].
      expect(await store.hit('w', 1000, 1000, 50)).toBe(3);
      expect(await store.hit('w', 5000, 1000, 50)).toBe(1);
    });

    it('remembers at most cap hits', async () => {
      for (let i = 0; i < 10; i++) await store.hit('c', i, 1000, 4);
      expect(await store.hit('c', 10, 1000, 4)).toBe(4);
    });

    it('counts concurrent hits without losing any', async () => {
      const counts = await Promise.all(Array.from({ length: 20 }, () => store.hit('par', 100, 1000, 100)));
      expect(counts.sort((a, b) => a - b)).toEqual(Array.from({ length: 20 }, (_, i) => i + 1));
    });

    it('adds concurrent scores without losing any', async () => {
      await Promise.all(Array.from({ length: 20 }, () => store.addScore('ps', 1, 0, HL, bounds)));
      expect(await store.score('ps', 0, HL)).toBe(20);
    });

    it('locks until a time and keeps the later lock', async () => {
      expect(await store.lockedUntil('l', 0)).toBe(0);
      await store.lock('l', 5000, 0);
      expect(await store.lockedUntil('l', 4999)).toBe(5000);
      await store.lock('l', 3000, 100);
      expect(await store.lockedUntil('l', 200)).toBe(5000);
      expect(await store.lockedUntil('l', 5000)).toBe(0);
      await store.lock('l', 9000, 6000);
      expect(await store.lockedUntil('l', 6000)).toBe(9000);
    });
  });
}
