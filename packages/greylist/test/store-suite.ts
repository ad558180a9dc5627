import { randomUUID } from 'node:crypto';
import type { ClientRecord, GreylistPolicy, GreylistStore, TripletRecord } from '@mxguard/greylist';
import { DEFAULT_POLICY, greylistStep } from '@mxguard/greylist';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const MIN = 60_000;
const H = 60 * MIN;
const DAY = 24 * H;
const T0 = 1_700_000_000_000;

/**
 * The conformance suite every greylist store runs (as unstorage's `testDriver`): the same
 * decisions as the pure state machine, atomic under concurrency, with the time passed in.
 * Each test uses its own keys, so one store serves the whole suite.
 */
export function testStore(name: string, makeStore: () => Promise<GreylistStore>): void {
  describe(`store conformance: ${name}`, () => {
    let store: GreylistStore;
    beforeAll(async () => {
      store = await makeStore();
    });
    afterAll(async () => {
      await store?.close();
    });
    const keys = () => {
      const id = randomUUID();
      return {
        triplet: `192.0.2.0/24/s-${id}@example.org/r@example.com`,
        client: `198.51.100.${id.length}-${id}`,
      };
    };
    const ask = (
      k: { triplet: string; client: string },
      now: number,
      policy: GreylistPolicy = DEFAULT_POLICY,
    ) => store.decide({ ...k, policy }, now);

    it('first contact, too early, in the window, passed before', async () => {
      const k = keys();
      expect(await ask(k, T0)).toEqual({
        outcome: 'new',
        retryIn: 300,
        firstPass: false,
        delayedMs: 0,
        clientWhitelisted: false,
      });
      expect(await ask(k, T0 + 60_001)).toMatchObject({ outcome: 'early', retryIn: 240 });
      expect(await ask(k, T0 + 5 * MIN)).toEqual({
        outcome: 'passed',
        retryIn: 0,
        firstPass: true,
        delayedMs: 5 * MIN,
        clientWhitelisted: false,
      });
      expect(await ask(k, T0 + DAY)).toMatchObject({ outcome: 'passed', firstPass: false });
      const seen = await store.inspect(k.triplet, k.client);
      expect(seen.triplet).toEqual({ first: T0, last: T0 + DAY, count: 4 });
      expect(seen.client).toEqual({ count: 1, last: T0 + 5 * MIN });
    });

    it('after the retry window the delay starts over; after max age the triplet is new', async () => {
      const k = keys();
      await ask(k, T0);
      expect(await ask(k, T0 + 2 * DAY + 1)).toMatchObject({ outcome: 'expired-restart', retryIn: 300 });
      expect(await ask(k, T0 + 2 * DAY + 1 + 5 * MIN)).toMatchObject({ outcome: 'passed', firstPass: true });
      const k2 = keys();
      await ask(k2, T0);
      await ask(k2, T0 + 5 * MIN);
      expect(await ask(k2, T0 + 5 * MIN + 35 * DAY + 1)).toMatchObject({ outcome: 'new' });
    });

    it('auto-whitelists a client after 5 passes counted once an hour', async () => {
      const client = keys().client;
      for (let i = 0; i < 5; i++) {
        const k = { ...keys(), client };
        const t = T0 + i * H;
        await ask(k, t);
        const d = await ask(k, t + 5 * MIN);
        expect(d).toMatchObject({ outcome: 'passed', clientWhitelisted: i === 4 });
      }
      expect(await ask({ ...keys(), client }, T0 + 5 * H)).toMatchObject({ outcome: 'whitelisted-client' });
    });

    it('decides as the pure state machine over random histories', async () => {
      const policyArb = fc.record({
        delay: fc.integer({ min: 0, max: 10 * MIN }),
        retryWindow: fc.integer({ min: 10 * MIN, max: 3 * DAY }),
        maxAge: fc.integer({ min: 3 * DAY, max: 40 * DAY }),
        awlClients: fc.integer({ min: 0, max: 3 }),
        awlInterval: fc.integer({ min: 0, max: 2 * H }),
      });
      const opsArb = fc.array(
        fc.record({ dt: fc.integer({ min: -MIN, max: 3 * DAY }), triplet: fc.integer({ min: 0, max: 2 }) }),
        { minLength: 1, maxLength: 25 },
      );
      await fc.assert(
        fc.asyncProperty(policyArb, opsArb, async (policy, ops) => {
          const client = keys().client;
          const triplets = [keys().triplet, keys().triplet, keys().triplet];
          const model = new Map<string, TripletRecord>();
          let modelClient: ClientRecord | undefined;
          let now = T0;
          for (const op of ops) {
            now += op.dt;
            const triplet = triplets[op.triplet]!;
            const want = greylistStep({ triplet: model.get(triplet), client: modelClient }, now, policy);
            if (want.triplet) model.set(triplet, want.triplet);
            if (want.client) modelClient = want.client;
            expect(await store.decide({ triplet, client, policy }, now)).toEqual(want.decision);
          }
        }),
        { numRuns: 40 },
      );
    });

    it('many concurrent deciders on one triplet: one creates it, one pass counts', async () => {
      const k = keys();
      const n = 50;
      const first = await Promise.all(Array.from({ length: n }, () => ask(k, T0)));
      expect(first.filter((d) => d.outcome === 'new')).toHaveLength(1);
      expect(first.filter((d) => d.outcome === 'early')).toHaveLength(n - 1);
      const later = await Promise.all(Array.from({ length: n }, () => ask(k, T0 + 5 * MIN)));
      expect(later.every((d) => d.outcome === 'passed')).toBe(true);
      expect(later.filter((d) => d.firstPass)).toHaveLength(1);
      const seen = await store.inspect(k.triplet, k.client);
      expect(seen.triplet?.count).toBe(2 * n);
      expect(seen.client?.count).toBe(1);
    });

    it('concurrent passes of many triplets of one client each count (once an hour)', async () => {
      const client = keys().client;
      const ks = Array.from({ length: 10 }, () => ({ ...keys(), client }));
      await Promise.all(ks.map((k, i) => ask(k, T0 + i * H)));
      await Promise.all(ks.map((k, i) => ask(k, T0 + i * H + 5 * MIN)));
      // Ten passes an hour apart: the count moves ten times whatever the order they arrived in,
      // except that one arriving before an already-counted later one falls inside its hour.
      const seen = await store.inspect(ks[0]!.triplet, client);
      expect(seen.client?.count).toBeGreaterThanOrEqual(5);
      expect(await ask({ ...keys(), client }, T0 + 20 * H)).toMatchObject({ outcome: 'whitelisted-client' });
    });
  });
}
