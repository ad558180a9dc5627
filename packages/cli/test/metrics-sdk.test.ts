/**
 * The pieces under `--http`, as an SDK user wires them into an own process: MxguardMetrics in the
 * caller's prom-client registry, fed by a DecisionHub around the chain; the HTTP listener's routing;
 * the StorePool that keeps stores across reloads.
 */
import { type Check, chain, ManualClock, next, reject, reply } from '@mxguard/core';
import { Counter, Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { DecisionHub } from '../src/decisions.js';
import { startHttp } from '../src/http.js';
import { MxguardMetrics } from '../src/metrics.js';
import { observedBy, StorePool } from '../src/wiring.js';

const silent = { debug() {}, info() {}, warn() {}, error() {} };

const claimsUs: Check = {
  name: 'helo-claims-us',
  stage: 'helo',
  run: (s) =>
    s.helo === 'localhost' ? reject(reply(550, '5.7.1', 'you are not us'), 'HELO claims to be us') : next(),
};

describe('MxguardMetrics in a registry of your own', () => {
  it('counts the decisions of a chain observed through a DecisionHub, beside your own metrics', async () => {
    const registry = new Registry();
    const mine = new Counter({ name: 'my_app_requests_total', help: 'mine', registers: [registry] });
    mine.inc();
    const metrics = new MxguardMetrics(registry);
    const hub = new DecisionHub(silent);
    metrics.observe(hub);
    const seen: string[] = [];
    hub.subscribe((e) => seen.push(`${e.at} ${e.decision.action}`));
    hub.subscribe(() => {
      throw new Error('a broken observer');
    });
    const clock = new ManualClock(1_800_000_000_000);
    const c = observedBy(chain([claimsUs]), hub, clock);
    const base = { clientAddress: '192.0.2.1', stage: 'rcpt' as const, rcptTo: 'a@example.com' };
    expect((await c.evaluate({ ...base, helo: 'localhost' })).action).toBe('reject');
    expect((await c.evaluate({ ...base, helo: 'mail.example.net' })).action).toBe('next');
    expect(seen).toEqual(['1800000000000 reject', '1800000000000 next']);

    const text = await registry.metrics();
    expect(text).toContain('my_app_requests_total 1');
    expect(text).toContain(
      'mxguard_decisions_total{check="helo-claims-us",action="reject",code="550",stage="rcpt",mode="enforce"} 1',
    );
    expect(text).toContain(
      'mxguard_decisions_total{check="none",action="next",code="",stage="rcpt",mode="enforce"} 1',
    );
    expect(text).toContain('mxguard_decision_seconds_count{stage="rcpt"} 2');
    // No process metrics unless asked: your process has its own.
    expect(text).not.toContain('process_cpu');
    // The same names twice in one registry is prom-client's error, at once.
    expect(() => new MxguardMetrics(registry)).toThrow(/already been registered/);
    // A prefix of your own avoids it.
    expect(() => new MxguardMetrics(registry, { prefix: 'mx2_' })).not.toThrow();
  });

  it('gives the latency histogram exactly what prom-client would: buckets, +Inf, sum and count, scrape after scrape', async () => {
    const registry = new Registry();
    const metrics = new MxguardMetrics(registry);
    const hub = new DecisionHub(silent);
    metrics.observe(hub);
    const decision = { action: 'next' as const, trace: [], findings: [] };
    const at = (stage: 'rcpt' | 'mail', seconds: number) =>
      hub.emit({ session: { clientAddress: '192.0.2.1', stage }, decision, at: 0, seconds });
    // The same values observed by prom-client itself, as the reference.
    const reference = new Registry();
    const expected = new MxguardMetrics(reference).decisionSeconds;
    const values: ['rcpt' | 'mail', number][] = [
      ['rcpt', 0.0004],
      ['rcpt', 0.001],
      ['rcpt', 0.003],
      ['rcpt', 0.2],
      ['rcpt', 60],
      ['mail', 0.02],
    ];
    const series = async (r: Registry) =>
      (await r.getSingleMetricAsString('mxguard_decision_seconds'))
        .split('\n')
        .filter((l) => !l.startsWith('#'));
    for (const [stage, s] of values) {
      at(stage, s);
      expected.observe({ stage }, s);
    }
    expect(await series(registry)).toEqual(await series(reference));
    expect(await series(registry)).toContain('mxguard_decision_seconds_bucket{le="0.005",stage="rcpt"} 3');
    expect(await series(registry)).toContain('mxguard_decision_seconds_bucket{le="+Inf",stage="rcpt"} 5');
    // A second scrape after more decisions adds to the first; a direct observe is kept too.
    at('rcpt', 0.3);
    expected.observe({ stage: 'rcpt' }, 0.3);
    metrics.decisionSeconds.observe({ stage: 'rcpt' }, 2);
    expected.observe({ stage: 'rcpt' }, 2);
    expect(await series(registry)).toEqual(await series(reference));
    expect(await series(registry)).toContain('mxguard_decision_seconds_count{stage="rcpt"} 7');
  });

  it('times and counts store operations, greylist outcomes, findings and DNS lookups by list', async () => {
    const registry = new Registry();
    const metrics = new MxguardMetrics(registry);
    const store = {
      records: 0,
      async get(k: string) {
        if (k === 'bad') throw new Error('store down');
        this.records++;
        return k;
      },
      close: async () => {},
    };
    const measured = metrics.instrumentStore('greylist', store);
    expect(await measured.get('a')).toBe('a');
    await expect(measured.get('bad')).rejects.toThrow('store down');
    expect(measured.records).toBe(1);
    metrics.greylistOutcome('new');
    metrics.flag('connectionLimit');
    metrics.flag('earlyTalker');
    metrics.setLists(['zen.test.']);
    metrics.dnsLookup({ type: 'A', name: '2.0.0.127.zen.test', via: 'query', outcome: 'found' });
    metrics.dnsLookup({ type: 'A', name: 'example.net', via: 'cache', outcome: 'notfound' });
    const text = await registry.metrics();
    expect(text).toContain('mxguard_store_operations_total{store="greylist",outcome="ok"} 1');
    expect(text).toContain('mxguard_store_operations_total{store="greylist",outcome="error"} 1');
    expect(text).toContain('mxguard_store_seconds_count{store="greylist"} 2');
    expect(text).toContain('mxguard_greylist_outcomes_total{outcome="new"} 1');
    expect(text).toContain('mxguard_limits_hit_total{limit="connection"} 1');
    expect(text).toContain('mxguard_client_flags_total{flag="earlyTalker"} 1');
    expect(text).toContain('mxguard_dns_lookups_total{list="zen.test",via="query",outcome="found"} 1');
    expect(text).toContain('mxguard_dns_lookups_total{list="none",via="cache",outcome="notfound"} 1');
  });

  it('counts a store operation that answers at once (a memory store read), and one that throws', async () => {
    const registry = new Registry();
    const metrics = new MxguardMetrics(registry);
    const store = {
      scoreNow(k: string): number {
        if (k === 'bad') throw new Error('broken');
        return k.length;
      },
      close: async () => {},
    };
    const measured = metrics.instrumentStore('reputation', store);
    expect(measured.scoreNow('abc')).toBe(3);
    expect(measured.scoreNow('abcd')).toBe(4);
    expect(() => measured.scoreNow('bad')).toThrow('broken');
    const text = await registry.metrics();
    expect(text).toContain('mxguard_store_operations_total{store="reputation",outcome="ok"} 2');
    expect(text).toContain('mxguard_store_operations_total{store="reputation",outcome="error"} 1');
    expect(text).toContain('mxguard_store_seconds_count{store="reputation"} 3');
  });
});

describe('the --http listener', () => {
  it('routes exact paths, prefixes ending in "/" and "/" itself exactly; 404 otherwise', async () => {
    const http = await startHttp({ host: '127.0.0.1', port: 0, log: silent });
    const say = (what: string) => (_req: unknown, res: { end(s: string): void }) => res.end(what);
    http.mount('/', say('root'));
    http.mount('/a', say('a'));
    http.mount('/static/', say('static'));
    http.mount('/static/deep/', say('deep'));
    http.mount('/boom', () => {
      throw new Error('handler bug');
    });
    const get = async (p: string) => {
      const r = await fetch(`http://${http.address}${p}`);
      return `${r.status} ${await r.text()}`;
    };
    try {
      expect(await get('/')).toBe('200 root');
      expect(await get('/a')).toBe('200 a');
      expect(await get('/a/b')).toBe('404 not found\n');
      expect(await get('/static/x.css')).toBe('200 static');
      expect(await get('/static/deep/y')).toBe('200 deep');
      expect(await get('/nothing')).toBe('404 not found\n');
      expect(await get('/boom')).toBe('500 internal error\n');
      expect(() => http.mount('relative', say('x'))).toThrow(/starts with/);
    } finally {
      await http.close();
    }
  });

  it('refuses an address that is not loopback unless allowed', async () => {
    await expect(startHttp({ host: '192.0.2.1', port: 0, log: silent })).rejects.toThrow(
      /not a loopback address/,
    );
  });
});

describe('StorePool', () => {
  it('shares a store between runtimes with the same settings and closes it with its last user', async () => {
    const pool = new StorePool();
    let made = 0;
    const closed: number[] = [];
    const make = async () => {
      const id = ++made;
      return { id, close: async () => void closed.push(id) };
    };
    const a = await pool.acquire('greylist', { store: 'memory' }, make);
    const b = await pool.acquire('greylist', { store: 'memory' }, make);
    const c = await pool.acquire('greylist', { store: 'redis://127.0.0.1:1' }, make);
    expect([a.store.id, b.store.id, c.store.id]).toEqual([1, 1, 2]);
    await a.release();
    await a.release(); // twice is once
    expect(closed).toEqual([]);
    await b.release();
    expect(closed).toEqual([1]);
    await c.release();
    expect(closed).toEqual([1, 2]);
    expect(pool.size).toBe(0);
    // A store that cannot be made is not kept: the next acquire tries again.
    await expect(
      pool.acquire('greylist', 'x', async () => {
        throw new Error('bad url');
      }),
    ).rejects.toThrow('bad url');
    expect((await pool.acquire('greylist', 'x', make)).store.id).toBe(3);
  });
});
