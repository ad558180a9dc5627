import type { NextVerdict, Session } from '@mxguard/core';
import {
  bindFactories,
  buildPolicy,
  ConfigError,
  ManualClock,
  pureRegistry,
  silentLogger,
} from '@mxguard/core';
import { FakeResolver } from '@mxguard/dns';
import { createSignalsEnv, receivedCheck, signalsFactories } from '@mxguard/signals';
import fc from 'fast-check';
import { afterAll, describe, expect, expectTypeOf, it } from 'vitest';

// The client (62.157.140.133) sent these; the relays below it are its claims.
const headers = [
  'Received: from relay.isp.example (relay.isp.example [62.157.140.133])\r\n\tby relay.isp.example with ESMTPS id B; d',
  'Received: from [10.0.0.5] (p5b0a1c2d.dip0.t-ipconnect.de [91.10.28.45])\r\n\tby relay.isp.example with ESMTPSA id C; d',
  'Received: from laptop (unknown [85.214.1.2]) by relay.isp.example with ESMTPSA id D; d',
  'Subject: hello',
  '',
].join('\r\n');

const at = (extra: Partial<Session> = {}): Session => ({
  clientAddress: '62.157.140.133',
  stage: 'data',
  mailFrom: 'a@isp.example',
  recipients: ['b@example.com'],
  headers,
  ...extra,
});

const ctx = { clock: new ManualClock(0), log: silentLogger, findings: [] };

/** zen.test lists 91.10.28.45; pbl.test lists 91.10.28.45 and 85.214.1.2. */
function dns(): FakeResolver {
  return new FakeResolver({
    '45.28.10.91.zen.test': { A: ['127.0.0.2'] },
    '45.28.10.91.pbl.test': { A: ['127.0.0.10'] },
    '2.1.214.85.pbl.test': { A: ['127.0.0.11'] },
  });
}

describe('received: the relays of Received headers in DNS lists, as points', () => {
  it('looks up the public relays below the client, never the client, and counts a relay once', async () => {
    const resolver = dns();
    const check = receivedCheck({ resolver, lists: ['zen.test', 'pbl.test=127.0.0.[10..11]'] });
    expect(check.readsHeaders).toBe(true);
    const v = await check.run(at(), ctx);
    expect(v.action).toBe('next');
    expect(v.findings).toEqual([
      { check: 'received', tag: 'relay-listed:zen.test:91.10.28.45', score: 0.5 },
      { check: 'received', tag: 'relay-listed:pbl.test:85.214.1.2', score: 0.5 },
    ]);
    expect(v.reason).toBe('2 relays looked up; 2 listed, 1 point');
    expect(resolver.count('133.140.157.62.zen.test')).toBe(0);
    expect(resolver.count('5.0.0.10.zen.test')).toBe(0);
  });

  it('caps the total, skips trusted and top headers, and treats a DNS failure as not listed', async () => {
    const capped = receivedCheck({ resolver: dns(), lists: ['pbl.test'], score: 0.75, maxScore: 1 });
    expect((await capped.run(at(), ctx)).findings?.map((f) => f.score)).toEqual([0.75, 0.25]);
    const trusted = receivedCheck({ resolver: dns(), lists: ['pbl.test'], trusted: ['85.214.0.0/16'] });
    expect((await trusted.run(at(), ctx)).findings?.map((f) => f.tag)).toEqual([
      'relay-listed:pbl.test:91.10.28.45',
    ]);
    const skipped = receivedCheck({ resolver: dns(), lists: ['pbl.test'], skipTop: 2 });
    expect((await skipped.run(at(), ctx)).findings?.map((f) => f.tag)).toEqual([
      'relay-listed:pbl.test:85.214.1.2',
    ]);
    const failing = dns().fail('45.28.10.91.zen.test', 'A', 'temporary', 'SERVFAIL');
    const v = await receivedCheck({ resolver: failing, lists: ['zen.test'] }).run(at(), ctx);
    expect([v.action, v.findings ?? [], v.reason]).toEqual([
      'next',
      [],
      '2 relays looked up; 1 lookup failed temporarily',
    ]);
  });

  it('says why it did nothing: before DATA, without headers, without a resolver', async () => {
    const check = receivedCheck({ resolver: dns(), lists: ['zen.test'] });
    expect((await check.run(at({ stage: 'rcpt' }), ctx)).reason).toBe('stage not reached');
    const { headers: _h, ...noHeaders } = at();
    expect((await check.run(noHeaders, ctx)).reason).toBe('no headers yet');
    expect((await receivedCheck({ lists: ['zen.test'] }).run(at(), ctx)).reason).toBe('skipped: no resolver');
  });

  it('can only ever answer next: its type, and the options it refuses', () => {
    expectTypeOf(receivedCheck({ lists: ['zen.test'] }).run).returns.toEqualTypeOf<
      NextVerdict | Promise<NextVerdict>
    >();
    expect(() => receivedCheck({ lists: [] })).toThrow(/non-empty list/);
    expect(() => receivedCheck({ lists: ['list.dnswl.test=127.0.[0..255].[1..3]*-2'] })).toThrow(
      /no weights here/,
    );
    expect(() => receivedCheck({ lists: ['zen.test'], maxScore: -1 })).toThrow(/maxScore/);
  });
});

describe('received from a JSON config', () => {
  const env = createSignalsEnv({ clock: new ManualClock(0), resolver: dns() });
  afterAll(() => env.close());
  const registry = { ...pureRegistry, ...bindFactories(signalsFactories, env) };

  it('adds its points to the RCPT ones in a data-stage weigh, which may then refuse', async () => {
    const config = {
      checks: [
        { name: 'received', lists: ['zen.test', 'pbl.test'] },
        { name: 'weigh', reject: 3, stage: 'data' },
      ],
    };
    const { chain } = buildPolicy(config, registry, { clock: new ManualClock(0) });
    const rcptPoints = [{ check: 'dnsbl', tag: 'listed', score: 2 }];
    const alone = await chain.evaluate(at());
    expect(alone.action).toBe('next');
    const tipped = await chain.evaluate(at(), rcptPoints);
    expect([tipped.action, tipped.check, tipped.reply?.code]).toEqual(['reject', 'weigh-data', 554]);
    expect(tipped.reason).toMatch(/^score 3 .*received:relay-listed:zen.test:91.10.28.45=0.5/);
  });

  it('refuses an action, unknown options and list weights, naming the check', () => {
    const build = (o: Record<string, unknown>) =>
      buildPolicy({ checks: [{ name: 'received', ...o }] }, registry, { clock: new ManualClock(0) });
    expect(() => build({ lists: ['zen.test'], action: 'reject' })).toThrow(ConfigError);
    expect(() => build({ lists: ['zen.test'], action: 'reject' })).toThrow(/never rejects/);
    expect(() => build({ lists: ['zen.test'], reject: true })).toThrow(
      /config\.checks\[0\]\.reject: unknown key/,
    );
    expect(() => build({ lists: ['zen.test*2'] })).toThrow(/no weights here/);
    expect(() => build({})).toThrow(/lists/);
  });
});

describe('Received headers never decide a refusal (DESIGN principle 3)', () => {
  // Every relay of the pool is listed: the worst a header block can do.
  const pool = Array.from({ length: 12 }, (_, i) => `91.10.28.${i + 1}`);
  const zone: Record<string, { A: string[] }> = {};
  for (const ip of pool) zone[`${ip.split('.').reverse().join('.')}.zen.test`] = { A: ['127.0.0.2'] };
  const env = createSignalsEnv({ clock: new ManualClock(0), resolver: new FakeResolver(zone) });
  afterAll(() => env.close());
  const registry = { ...pureRegistry, ...bindFactories(signalsFactories, env) };
  const build = (checks: unknown[]) =>
    buildPolicy({ checks } as never, registry, { clock: new ManualClock(0) }).chain;

  it('refuses at config time a weigh that header points alone can reach', () => {
    // Measured before: with this config one listed relay in a Received header gave 554 5.7.1.
    const received = { name: 'received', lists: ['zen.test'], score: 50, maxScore: 100 };
    expect(() => build([received, { name: 'weigh', stage: 'data', reject: 1 }])).toThrow(ConfigError);
    expect(() => build([received, { name: 'weigh', stage: 'data', reject: 1 }])).toThrow(
      /weigh-data: header points alone \(received up to 100\) can reach its threshold 1/,
    );
    // The defer threshold counts too (a 4xx is a refusal), and equality reaches it.
    const capped = { name: 'received', lists: ['zen.test'], maxScore: 1 };
    expect(() => build([capped, { name: 'weigh', stage: 'data', reject: 5, defer: 1 }])).toThrow(
      /threshold 1/,
    );
    expect(() => build([capped, { name: 'weigh', stage: 'data', reject: 1.5 }])).not.toThrow();
    // A received check in warn mode adds nothing, so it cannot reach a threshold.
    expect(() =>
      build([
        { ...received, action: 'warn' },
        { name: 'weigh', stage: 'data', reject: 1 },
      ]),
    ).not.toThrow(); // its findings are dropped, as every warned link's
  });

  it('no header block, whatever its contents, yields a 4xx or 5xx without envelope evidence', async () => {
    const chain = build([
      { name: 'received', lists: ['zen.test'], score: 0.5, maxScore: 1 },
      { name: 'weigh', stage: 'data', reject: 1.5, defer: 1.01 },
    ]);
    const ip = fc.constantFrom(...pool);
    const received = fc.oneof(
      ip.map((a) => `Received: from x (x [${a}]) by relay.example with ESMTP id A; d`),
      ip.map((a) => `Received: from [${a}] by relay.example; d`),
      fc.tuple(ip, fc.string({ maxLength: 40 })).map(([a, t]) => `Received: ${t} [${a}] ${t}`),
    );
    const line = fc.oneof(received, fc.string({ maxLength: 80 }), fc.constant('X-Spam: yes'));
    const block = fc.array(line, { maxLength: 30 }).map((ls) => `${ls.join('\r\n')}\r\n\r\n`);
    let scored = 0;
    await fc.assert(
      fc.asyncProperty(block, async (headers) => {
        const d = await chain.evaluate(at({ headers }));
        if (d.findings.some((f) => f.check === 'received')) scored += 1;
        return d.action === 'next';
      }),
      { numRuns: 400 },
    );
    // The property was tried where it matters: many blocks did score (up to the cap).
    expect(scored).toBeGreaterThan(50);
    // With envelope evidence the same headers may tip the balance, as designed.
    const listed = `Received: from x (x [${pool[0]}]) by r; d\r\nReceived: from y (y [${pool[1]}]) by r; d\r\n\r\n`;
    const tipped = await chain.evaluate(at({ headers: listed }), [
      { check: 'dnsbl', tag: 'listed', score: 1 },
    ]);
    expect([tipped.action, tipped.check]).toEqual(['reject', 'weigh-data']);
  });
});
