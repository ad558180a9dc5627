import { ManualClock } from '@mxguard/core';
import type { ClientRecord, GreylistPolicy, GreylistRecords, TripletRecord } from '@mxguard/greylist';
import { DEFAULT_POLICY, greylistStep, policyFromOptions } from '@mxguard/greylist';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';

const S = 1000;
const MIN = 60 * S;
const H = 60 * MIN;
const DAY = 24 * H;

/** Runs decisions for one triplet/client pair, keeping the records as a store would. */
function driver(policy: GreylistPolicy = DEFAULT_POLICY) {
  const clock = new ManualClock(1_700_000_000_000);
  let records: { triplet?: TripletRecord; client?: ClientRecord } = {};
  return {
    clock,
    get records(): GreylistRecords {
      return records;
    },
    /** A fresh triplet for the same client (a new sender/recipient pair). */
    newTriplet() {
      records = { ...(records.client ? { client: records.client } : {}) };
    },
    decide() {
      const s = greylistStep(records, clock.now(), policy);
      records = {
        ...((s.triplet ?? records.triplet) ? { triplet: s.triplet ?? records.triplet } : {}),
        ...((s.client ?? records.client) ? { client: s.client ?? records.client } : {}),
      };
      return s.decision;
    },
  };
}

describe('state machine (postgrey algorithm)', () => {
  it('first contact is refused for the whole delay, and the reply tells the seconds left', () => {
    const d = driver();
    expect(d.decide()).toMatchObject({ outcome: 'new', retryIn: 300 });
    expect(d.records.triplet).toEqual({ first: d.clock.now(), last: d.clock.now(), count: 1 });
  });

  it('a retry too early is refused with what is left, rounded up', () => {
    const d = driver();
    d.decide();
    d.clock.advance(100 * S + 1);
    expect(d.decide()).toMatchObject({ outcome: 'early', retryIn: 200 });
    d.clock.advance(199 * S);
    expect(d.decide()).toMatchObject({ outcome: 'early', retryIn: 1 });
  });

  it('a retry in the window passes, once as a first pass, then as passed before', () => {
    const d = driver();
    d.decide();
    d.clock.advance(5 * MIN);
    expect(d.decide()).toMatchObject({ outcome: 'passed', retryIn: 0, firstPass: true, delayedMs: 5 * MIN });
    d.clock.advance(10 * DAY);
    expect(d.decide()).toMatchObject({ outcome: 'passed', firstPass: false, delayedMs: 0 });
  });

  it('a first retry after the retry window starts the delay over (expired-restart)', () => {
    const d = driver();
    d.decide();
    d.clock.advance(2 * DAY + 1);
    expect(d.decide()).toMatchObject({ outcome: 'expired-restart', retryIn: 300 });
    d.clock.advance(5 * MIN);
    expect(d.decide()).toMatchObject({ outcome: 'passed', firstPass: true, delayedMs: 5 * MIN });
  });

  it('exactly at the edge of the retry window still counts as in the window (postgrey: now-first > window)', () => {
    const d = driver();
    d.decide();
    d.clock.advance(2 * DAY);
    expect(d.decide()).toMatchObject({ outcome: 'passed' });
  });

  it('a passed triplet unseen for longer than max age is new again', () => {
    const d = driver();
    d.decide();
    d.clock.advance(5 * MIN);
    d.decide();
    d.clock.advance(35 * DAY);
    expect(d.decide().outcome).toBe('passed');
    d.clock.advance(35 * DAY + 1);
    expect(d.decide()).toMatchObject({ outcome: 'new', retryIn: 300 });
  });

  it('auto-whitelists a client after 5 passes, counted at most once an hour', () => {
    const d = driver();
    const passOne = () => {
      d.newTriplet();
      d.decide();
      d.clock.advance(5 * MIN);
      return d.decide();
    };
    // Two passes within the hour count once.
    expect(passOne().clientWhitelisted).toBe(false);
    expect(passOne().outcome).toBe('passed');
    expect(d.records.client?.count).toBe(1);
    for (let i = 2; i <= 4; i++) {
      d.clock.advance(H);
      passOne();
      expect(d.records.client?.count).toBe(i);
    }
    d.clock.advance(H);
    expect(passOne()).toMatchObject({ outcome: 'passed', clientWhitelisted: true });
    expect(d.records.client?.count).toBe(5);
    // Now any new triplet from this client passes at once and the triplet is not stored.
    d.newTriplet();
    expect(d.decide()).toMatchObject({ outcome: 'whitelisted-client', retryIn: 0 });
    expect(d.records.triplet).toBeUndefined();
  });

  it('auto-whitelist off (0) never whitelists', () => {
    const d = driver({ ...DEFAULT_POLICY, awlClients: 0 });
    for (let i = 0; i < 8; i++) {
      d.newTriplet();
      expect(d.decide().outcome).toBe('new');
      d.clock.advance(5 * MIN);
      d.decide();
      d.clock.advance(H);
    }
    expect(d.records.client).toBeUndefined();
  });

  it('a clock behind the record (a skewed MX host) neither rewinds it nor shortens the delay', () => {
    const d = driver();
    d.decide();
    const first = d.clock.now();
    d.clock.advance(-10 * MIN);
    expect(d.decide()).toMatchObject({ outcome: 'early', retryIn: 300 });
    expect(d.records.triplet).toMatchObject({ first, last: first });
  });

  it('delay 0 passes at once', () => {
    const s = greylistStep({}, 0, { ...DEFAULT_POLICY, delay: 0 });
    expect(s.decision).toMatchObject({ outcome: 'passed', firstPass: true, delayedMs: 0 });
  });

  it('policyFromOptions reads seconds and refuses nonsense', () => {
    expect(policyFromOptions({})).toEqual(DEFAULT_POLICY);
    expect(policyFromOptions({ delay: 60, autoWhitelistClients: 0 })).toMatchObject({
      delay: 60_000,
      awlClients: 0,
    });
    expect(() => policyFromOptions({ delay: -1 })).toThrow(/delay/);
    expect(() => policyFromOptions({ delay: '300' })).toThrow(/delay/);
    expect(() => policyFromOptions({ autoWhitelistClients: 1.5 })).toThrow(/autoWhitelistClients/);
    expect(() => policyFromOptions({ delay: 100_000, retryWindow: 60 })).toThrow(/retryWindow/);
  });
});

describe('state machine properties', () => {
  const policyArb = fc.record({
    delay: fc.integer({ min: 0, max: 10 * MIN }),
    retryWindow: fc.integer({ min: 10 * MIN, max: 3 * DAY }),
    maxAge: fc.integer({ min: 3 * DAY, max: 40 * DAY }),
    awlClients: fc.integer({ min: 0, max: 6 }),
    awlInterval: fc.integer({ min: 0, max: 2 * H }),
  });
  // Steps in time, backwards included (a skewed clock), with triplet changes.
  const opsArb = fc.array(fc.record({ dt: fc.integer({ min: -H, max: 3 * DAY }), fresh: fc.boolean() }), {
    minLength: 1,
    maxLength: 60,
  });

  it('time never runs backwards in a record, and first <= last', () => {
    fc.assert(
      fc.property(policyArb, opsArb, (policy, ops) => {
        let now = 1_700_000_000_000;
        let triplet: TripletRecord | undefined;
        let client: ClientRecord | undefined;
        for (const op of ops) {
          now += op.dt;
          if (op.fresh) triplet = undefined;
          const s = greylistStep({ triplet, client }, now, policy);
          if (s.triplet) {
            expect(s.triplet.first).toBeLessThanOrEqual(s.triplet.last);
            if (triplet && now - triplet.last <= policy.maxAge) {
              expect(s.triplet.last).toBeGreaterThanOrEqual(triplet.last);
              expect(s.triplet.first).toBeGreaterThanOrEqual(triplet.first);
              expect(s.triplet.count).toBe(triplet.count + 1);
            }
            triplet = s.triplet;
          }
          if (s.client) {
            if (client && now - client.last <= policy.maxAge) {
              expect(s.client.last).toBeGreaterThanOrEqual(client.last);
              expect(s.client.count).toBe(client.count + 1);
            }
            client = s.client;
          }
          const d = s.decision;
          // A refusal always says how long; a pass never does.
          if (d.outcome === 'passed' || d.outcome === 'whitelisted-client') expect(d.retryIn).toBe(0);
          else expect(d.retryIn).toBeGreaterThan(0);
          expect(d.retryIn).toBeLessThanOrEqual(Math.ceil(policy.delay / 1000));
        }
      }),
      { numRuns: 500 },
    );
  });

  it('a sender that retries after the delay and within the window always gets through on that retry', () => {
    fc.assert(
      fc.property(policyArb, fc.integer({ min: 0, max: 10 * DAY }), (policy, extra) => {
        const wait = policy.delay + (extra % Math.max(1, policy.retryWindow - policy.delay + 1));
        const a = greylistStep({}, 0, policy);
        const b = greylistStep({ triplet: a.triplet }, wait, policy);
        expect(b.decision.outcome).toBe('passed');
      }),
      { numRuns: 300 },
    );
  });
});
