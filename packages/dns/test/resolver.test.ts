/**
 * The default resolver against a programmable DNS server on loopback: coalescing and caching proved
 * by the server's own query counts, faults mapped to typed failures, and a fuzz over fault modes
 * proving a temporary failure never becomes a 5xx.
 */
import type { Session } from '@mxguard/core';
import { chain, ManualClock } from '@mxguard/core';
import {
  DnsResolver,
  dnsbl,
  dnswl,
  fcrdns,
  heloResolves,
  type LookupEvent,
  parseListSpec,
  prefetch,
  recipientDomain,
  rhsbl,
  senderDomain,
} from '@mxguard/dns';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { type Fault, TestDnsServer } from './helpers/dns-server.js';

const server = new TestDnsServer();
const ZEN = parseListSpec('zen.test=127.0.0.[2..11]*3');
const SBL = parseListSpec('sbl.test*1');

beforeAll(async () => {
  server
    .add('99.2.0.192.zen.test', { type: 'A', data: '127.0.0.2', ttl: 60 })
    .add('99.2.0.192.zen.test', { type: 'TXT', data: ['listed: see https://zen.test/'] })
    .add('a.test', { type: 'A', data: '192.0.2.1', ttl: 120 })
    .add('mx.test', { type: 'MX', data: { preference: 10, exchange: 'a.test' } })
    .add('null.test', { type: 'MX', data: { preference: 0, exchange: '.' } })
    .add('99.2.0.192.in-addr.arpa', { type: 'PTR', data: 'a.test' })
    .add('big.test', { type: 'TXT', data: ['x'.repeat(200)] })
    .add('big.test', { type: 'TXT', data: ['y'.repeat(200)] })
    .add('big.test', { type: 'TXT', data: ['z'.repeat(200)] });
  await server.start();
});
afterAll(() => server.stop());
beforeEach(() => {
  server.reset();
  server.fault = undefined;
  server.faults.clear();
});

function resolver(clock = new ManualClock(0), o = {}) {
  return new DnsResolver({ servers: [server.address], timeout: 300, tries: 1, clock, ...o });
}

describe('DnsResolver', () => {
  it('answers with TTLs and maps NXDOMAIN / NODATA to notfound', async () => {
    const r = resolver();
    expect(await r.a('a.test')).toEqual({ ok: true, records: ['192.0.2.1'], ttl: 120 });
    expect(await r.mx('mx.test')).toMatchObject({
      ok: true,
      records: [{ priority: 10, exchange: 'a.test' }],
    });
    expect(await r.mx('null.test')).toMatchObject({ ok: true, records: [{ priority: 0, exchange: '' }] });
    expect(await r.ptr('192.0.2.99')).toMatchObject({ ok: true, records: ['a.test'] });
    expect(await r.a('nx.test')).toEqual({ ok: false, error: 'notfound', detail: 'NXDOMAIN' });
    expect(await r.aaaa('a.test')).toEqual({ ok: false, error: 'notfound', detail: 'NODATA' });
  });

  it('coalesces identical queries in flight: N concurrent sessions from one IP, one query a list', async () => {
    const r = resolver();
    const lists = [ZEN, SBL];
    const check = dnsbl(r, lists, { health: false, threshold: 3 });
    const clock = new ManualClock(0);
    const sessions = Array.from({ length: 50 }, () =>
      check.run({ clientAddress: '192.0.2.99', stage: 'rcpt' }, { clock, log: console, findings: [] }),
    );
    const verdicts = await Promise.all(sessions);
    expect(verdicts.every((v) => v.action === 'reject')).toBe(true);
    expect(server.count('99.2.0.192.zen.test', 'A')).toBe(1);
    expect(server.count('99.2.0.192.sbl.test', 'A')).toBe(1);
    expect(server.count('99.2.0.192.zen.test', 'TXT')).toBe(1);
    expect(r.stats()).toMatchObject({ queries: 3, coalesced: 49 * 2 + 49 });
  });

  it('tells onLookup how each lookup was answered (query, coalesced, cache) and its outcome', async () => {
    const events: LookupEvent[] = [];
    const r = resolver(new ManualClock(0), { onLookup: (e: LookupEvent) => events.push(e) });
    await Promise.all([r.a('99.2.0.192.zen.test'), r.a('99.2.0.192.ZEN.test.')]);
    await r.a('99.2.0.192.zen.test');
    await r.a('nx.test');
    server.fault = 'servfail';
    await r.a('sf.test');
    server.fault = 'drop';
    await r.a('drop.test');
    expect(events).toEqual([
      { type: 'A', name: '99.2.0.192.zen.test', via: 'query', outcome: 'found' },
      { type: 'A', name: '99.2.0.192.zen.test', via: 'coalesced', outcome: 'found' },
      { type: 'A', name: '99.2.0.192.zen.test', via: 'cache', outcome: 'found' },
      { type: 'A', name: 'nx.test', via: 'query', outcome: 'notfound' },
      { type: 'A', name: 'sf.test', via: 'query', outcome: 'error' },
      { type: 'A', name: 'drop.test', via: 'query', outcome: 'timeout' },
    ]);
    // An observer that throws does not change the answer.
    const bad = resolver(new ManualClock(0), {
      onLookup: () => {
        throw new Error('observer bug');
      },
    });
    server.fault = undefined;
    expect(await bad.a('a.test')).toMatchObject({ ok: true, records: ['192.0.2.1'] });
  });

  it('caches: the second session sends zero queries; TTLs are honoured on the injected clock', async () => {
    const clock = new ManualClock(0);
    const r = resolver(clock, { minTtl: 5, maxTtl: 3600, negativeTtl: 30 });
    await r.a('a.test');
    await r.a('nx.test');
    server.reset();
    await r.a('a.test');
    await r.a('nx.test');
    expect(server.total()).toBe(0);
    clock.advance(31_000); // negative entry expired, positive (TTL 120) not
    await r.a('a.test');
    await r.a('nx.test');
    expect(server.count('a.test', 'A')).toBe(0);
    expect(server.count('nx.test', 'A')).toBe(1);
    clock.advance(90_000);
    await r.a('a.test');
    expect(server.count('a.test', 'A')).toBe(1);
  });

  it('clamps TTLs to maxTtl', async () => {
    const clock = new ManualClock(0);
    const r = resolver(clock, { maxTtl: 10 });
    await r.a('a.test');
    clock.advance(11_000);
    await r.a('a.test');
    expect(server.count('a.test', 'A')).toBe(2);
  });

  it.each<[Fault, string]>([
    ['servfail', 'SERVFAIL'],
    ['refused', 'REFUSED'],
    ['drop', 'TIMEOUT'],
  ])('maps %s to a temporary failure', async (fault, detail) => {
    server.fault = fault;
    const r = resolver();
    expect(await r.a('a.test')).toEqual({ ok: false, error: 'temporary', detail });
    expect(r.stats().failures).toBe(1);
  });

  it('retries a truncated answer over TCP', async () => {
    server.setFault('big.test', 'TXT', 'truncate');
    const r = resolver();
    const t = await r.txt('big.test');
    expect(t.ok && t.records).toHaveLength(3);
  });

  it('never sends a query for an invalid name', async () => {
    const r = resolver();
    expect(await r.a('bad..name')).toMatchObject({ ok: false, error: 'notfound' });
    expect(await r.a(`${'a'.repeat(64)}.test`)).toMatchObject({ ok: false, error: 'notfound' });
    expect(server.total()).toBe(0);
  });

  it('bounds the queries in flight (OVERLOAD is temporary)', async () => {
    server.fault = 'drop';
    const r = resolver(new ManualClock(0), { maxPending: 2 });
    const results = await Promise.all([r.a('x1.test'), r.a('x2.test'), r.a('x3.test')]);
    expect(results[2]).toEqual({ ok: false, error: 'temporary', detail: 'OVERLOAD' });
  });

  it('prefetch at connect makes the later checks free on the wire', async () => {
    const r = resolver();
    const session: Session = { clientAddress: '192.0.2.99', stage: 'connect' };
    const p = prefetch(r, session, { dnsLists: [ZEN, SBL] });
    await p.settled;
    expect(await p.rdns).toEqual({ names: ['a.test'], verified: null });
    const sent = server.total();
    const c = chain([dnsbl(r, [ZEN, SBL], { health: false, threshold: 3 }), fcrdns(r)], {
      clock: new ManualClock(0),
    });
    const d = await c.evaluate({ ...session, stage: 'rcpt', rdns: await p.rdns });
    expect(d.action).toBe('reject');
    expect(server.total()).toBe(sent);
  });
});

describe('a temporary DNS failure never becomes a 5xx (fuzz over fault modes)', () => {
  const faults: (Fault | undefined)[] = ['servfail', 'drop', 'refused', undefined];
  const names = [
    '99.2.0.192.zen.test',
    '99.2.0.192.sbl.test',
    '99.2.0.192.in-addr.arpa',
    'a.test',
    'mx.test',
    'helo.test',
    'sender.test',
    'rcpt.test',
    'sender.test.dbl.test',
  ];
  // A seeded generator: the same cases every run.
  let seed = 20260501;
  const rand = () => {
    seed = (seed * 1103515245 + 12345) & 0x7fffffff;
    return seed / 0x7fffffff;
  };
  const session: Session = {
    clientAddress: '192.0.2.99',
    helo: 'helo.test',
    mailFrom: 'a@sender.test',
    rcptTo: 'b@rcpt.test',
    stage: 'rcpt',
  };
  const quiet = { debug() {}, info() {}, warn() {}, error() {} };
  function checksOn(r: DnsResolver) {
    return [
      dnswl(r, [parseListSpec('wl.test*-2')], { health: false }),
      dnsbl(r, [ZEN, SBL], { health: false, threshold: 3 }),
      rhsbl(r, [parseListSpec('dbl.test')], { health: false }),
      fcrdns(r, { action: 'reject' }),
      heloResolves(r, { rejectCode: 550 }),
      senderDomain(r, { rejectCode: 550 }),
      recipientDomain(r, { rejectCode: 550 }),
    ];
  }
  async function verdicts(r: DnsResolver) {
    const ctx = { clock: new ManualClock(0), log: quiet, findings: [] };
    const out: Record<string, string> = {};
    for (const c of checksOn(r)) {
      const v = await c.run(session, ctx);
      out[c.name] = v.action === 'next' ? 'next' : `${v.action} ${v.reply.code}`;
    }
    return out;
  }
  it('over 40 seeded combinations of faults, a fault never causes a 5xx the healthy server would not give', async () => {
    server.faults.clear();
    const baseline = await verdicts(resolver(new ManualClock(0), { timeout: 100 }));
    // The healthy run does reject (zen listing, unknown names with rejectCode 550): the fuzz has teeth.
    expect(Object.values(baseline).filter((v) => v.startsWith('reject')).length).toBeGreaterThanOrEqual(3);
    let softened = 0;
    for (let round = 0; round < 40; round++) {
      server.faults.clear();
      for (const n of names) {
        const f = faults[Math.floor(rand() * faults.length)];
        if (f) server.setFault(n, '*', f);
      }
      const got = await verdicts(resolver(new ManualClock(0), { timeout: 100 }));
      for (const [check, v] of Object.entries(got)) {
        if (v.startsWith('reject')) expect(v, `${check} in round ${round}`).toBe(baseline[check]);
        else if (v.startsWith('defer')) expect(Number(v.split(' ')[1])).toBeLessThan(500);
        if (v !== baseline[check]) softened++;
      }
    }
    expect(softened).toBeGreaterThan(0);
  }, 60_000);
});
