/**
 * The `--http` listener of `mxguard serve` and `mxguard policy`: Prometheus metrics scraped with a
 * real HTTP client (node's fetch) and parsed from the text format, after real decisions (swaks on
 * SMTP, policy requests on the wire); `/health` with a real Redis stopped and a DNS list (rbldnsd)
 * that lists everything.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { parseMetrics, type Sample, sum } from '../../../testing/metrics.js';
import {
  askPolicy,
  mxguardBin,
  type Running,
  startMxguard,
  swaksAsync as swaks,
} from '../../../testing/mxguard.js';
import { rcptRequest } from '../../../testing/postfix.js';
import { type Daemon, startRbldnsd } from '../../dns/test/helpers/daemons.js';
import { type RedisServer, startRedis } from '../../greylist/test/redis-server.js';

const dir = mkdtempSync(join(tmpdir(), 'mxguard-metrics-'));
const running: Running[] = [];
const daemons: { stop(): Promise<void> }[] = [];
afterAll(async () => {
  await Promise.all(running.map((r) => r.stop()));
  await Promise.all(daemons.map((d) => d.stop()));
});

function writeConfig(name: string, config: object): string {
  const path = join(dir, name);
  writeFileSync(path, JSON.stringify(config));
  return path;
}

async function start(command: 'serve' | 'policy', args: string[]): Promise<Running> {
  const r = await startMxguard(command, ['--http', '127.0.0.1:0', ...args]);
  running.push(r);
  return r;
}

async function scrape(r: Running): Promise<{ samples: Sample[]; types: Map<string, string> }> {
  const res = await fetch(`http://${r.http}/metrics`);
  expect(res.status).toBe(200);
  expect(res.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/);
  return parseMetrics(await res.text());
}

async function health(r: Running): Promise<{ status: number; body: Record<string, unknown> }> {
  const res = await fetch(`http://${r.http}/health`);
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

/** Runs the CLI to its exit; resolves with its status and stderr. */
function run(args: string[]): Promise<{ code: number | null; stderr: string }> {
  return new Promise((resolve) => {
    const c = spawn(process.execPath, [mxguardBin, ...args]);
    let stderr = '';
    c.stderr.on('data', (b: Buffer) => {
      stderr += b.toString();
    });
    c.on('close', (code) => resolve({ code, stderr }));
  });
}

const site = { ourDomains: ['example.com'], ourHosts: ['mx.example.com'] };

describe('mxguard serve --http', () => {
  it('counts the decisions of real SMTP sessions by check, action, code and stage, with their latency', async () => {
    const config = writeConfig('serve.json', site);
    const s = await start('serve', ['--offline', '--config', config, '--spool', join(dir, 'spool')]);
    expect(s.stdout()).toMatch(
      /^status: http:\/\/127\.0\.0\.1:\d+\/ \(metrics: \/metrics, health: \/health\)$/m,
    );

    const before = await scrape(s);
    expect(sum(before.samples, 'mxguard_decisions_total')).toBe(0);

    const refused = await swaks(s.address, [
      '--helo',
      'localhost',
      '--from',
      'alice@example.net',
      '--to',
      'postmaster@example.com',
    ]);
    expect(refused).toMatch(/<\*\* +550 5\.7\.1 /);
    const accepted = await swaks(s.address, [
      '--helo',
      'mail.example.net',
      '--from',
      'alice@example.net',
      '--to',
      'postmaster@example.com',
    ]);
    expect(accepted).toMatch(/<- +250 2\.0\.0 Ok: queued as /);

    const { samples, types } = await scrape(s);
    expect(types.get('mxguard_decisions_total')).toBe('counter');
    expect(types.get('mxguard_decision_seconds')).toBe('histogram');
    expect(
      sum(samples, 'mxguard_decisions_total', {
        check: 'helo-claims-us',
        action: 'reject',
        code: '550',
        stage: 'rcpt',
        mode: 'enforce',
      }),
    ).toBe(1);
    // The accepted session: nothing to say at RCPT nor after DATA.
    expect(sum(samples, 'mxguard_decisions_total', { check: 'none', action: 'next', stage: 'rcpt' })).toBe(1);
    expect(sum(samples, 'mxguard_decisions_total', { check: 'none', action: 'next', stage: 'data' })).toBe(1);
    // Every decision has its latency observed, and each took less than the 10 s budget.
    const decisions = sum(samples, 'mxguard_decisions_total');
    expect(sum(samples, 'mxguard_decision_seconds_count')).toBe(decisions);
    expect(sum(samples, 'mxguard_decision_seconds_bucket', { le: '10' })).toBe(decisions);
    // The reputation ran at RCPT for both sessions; neither client had offended before.
    expect(sum(samples, 'mxguard_reputation_tiers_total', { tier: 'clean' })).toBeGreaterThanOrEqual(2);
    // Its store is counted and timed.
    expect(
      sum(samples, 'mxguard_store_operations_total', { store: 'reputation', outcome: 'ok' }),
    ).toBeGreaterThan(0);
    expect(sum(samples, 'mxguard_store_seconds_count', { store: 'reputation' })).toBeGreaterThan(0);
    expect(samples.some((x) => x.name === 'mxguard_connections')).toBe(true);
    expect(samples.some((x) => x.name === 'mxguard_process_resident_memory_bytes')).toBe(true);

    const h = await health(s);
    expect(h).toEqual({
      status: 200,
      body: { status: 'ok', stores: { greylist: 'up', reputation: 'up' }, lists: {}, problems: [] },
    });
  });

  it('answers 404 for an unknown path and 405 for anything but GET and HEAD', async () => {
    const s = running[0] ?? (await start('serve', ['--offline', '--spool', join(dir, 'spool')]));
    expect((await fetch(`http://${s.http}/nothing`)).status).toBe(404);
    const post = await fetch(`http://${s.http}/metrics`, { method: 'POST', body: 'x' });
    expect(post.status).toBe(405);
    expect(post.headers.get('allow')).toBe('GET, HEAD');
  });

  it('refuses a non-loopback --http address unless --http-allow-remote says so', async () => {
    const r = await run(['serve', '--offline', '--listen', '127.0.0.1:0', '--http', '0.0.0.0:0']);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/^mxguard: --http 0\.0\.0\.0:0: not a loopback address.*--http-allow-remote/m);
    const bad = await run(['policy', '--offline', '--http', 'here']);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/^mxguard: --http must be HOST:PORT/m);
  });
});

describe('mxguard policy --http', () => {
  let rbl: Daemon;

  it('counts DNS lookups by list, shows each list health, and /health says 503 for a list that lists everything', async () => {
    rbl = await startRbldnsd({
      'bl.test': [{ type: 'ip4set', data: '127.0.0.2\n192.0.2.99\n' }],
      // A list gone wrong: it lists every address, 127.0.0.1 (RFC 5782's "never listed") too.
      'all.test': [{ type: 'ip4set', data: '0.0.0.0/1\n128.0.0.0/1\n' }],
    });
    daemons.push(rbl);
    const config = writeConfig('policy-dns.json', {
      ...site,
      checks: ['dnsbl'],
      dnsLists: ['bl.test=127.0.0.2', 'all.test=127.0.0.2'],
    });
    const p = await start('policy', ['--resolver', rbl.address, '--config', config]);
    const [listed, clean] = await askPolicy(p.port, [
      rcptRequest({ client_address: '192.0.2.99', client_name: 'unknown', instance: 'm.1' }),
      rcptRequest({ client_address: '192.0.2.10', client_name: 'unknown', instance: 'm.2' }),
    ]);
    expect(listed).toMatch(/^5\d\d /);
    expect(clean).toBe('DUNNO');

    const { samples, types } = await scrape(p);
    expect(types.get('mxguard_dns_lookups_total')).toBe('counter');
    expect(sum(samples, 'mxguard_dns_lookups_total', { list: 'bl.test', outcome: 'found' })).toBeGreaterThan(
      0,
    );
    expect(
      sum(samples, 'mxguard_dns_lookups_total', { list: 'bl.test', outcome: 'notfound' }),
    ).toBeGreaterThan(0);
    expect(sum(samples, 'mxguard_dns_lookups_total', { list: 'bl.test', via: 'query' })).toBeGreaterThan(0);
    expect(sum(samples, 'mxguard_dns_list_health', { list: 'bl.test', kind: 'ip' })).toBe(1);
    expect(sum(samples, 'mxguard_dns_list_health', { list: 'all.test', kind: 'ip' })).toBe(0);
    // Never asked about an IPv6 client: not probed yet.
    expect(sum(samples, 'mxguard_dns_list_health', { list: 'bl.test', kind: 'ip6' })).toBe(-1);
    expect(sum(samples, 'mxguard_decisions_total', { check: 'dnsbl', action: 'reject', stage: 'rcpt' })).toBe(
      1,
    );

    // A request line longer than the parser takes (4096 bytes): the connection is closed, a limit hit.
    await new Promise<void>((resolve, reject) => {
      const sock = connect(p.port, '127.0.0.1');
      sock.on('error', reject);
      sock.on('close', () => resolve());
      sock.write(`sender=${'a'.repeat(5000)}\n`);
    });
    const after = await scrape(p);
    expect(sum(after.samples, 'mxguard_limits_hit_total', { limit: 'line-too-long' })).toBe(1);

    const h = await health(p);
    expect(h.status).toBe(503);
    expect(h.body).toMatchObject({
      status: 'unhealthy',
      lists: { 'bl.test ip': 'healthy', 'all.test ip': 'disabled', 'bl.test ip6': 'unprobed' },
      problems: ['DNS list all.test (ip) is disabled: it lists everything'],
    });
  });

  describe('with Redis stores', () => {
    let redis: RedisServer;

    it('/health is 200 while Redis answers and 503 naming the stores once it is gone; greylist outcomes are counted', async () => {
      redis = await startRedis();
      daemons.push({ stop: () => redis.dispose() });
      const config = writeConfig('policy-redis.json', {
        ...site,
        greylist: { store: redis.url, prefix: 'mxg-metrics:' },
        reputationStore: { url: redis.url, prefix: 'mxg-metrics:rep:' },
        options: { greylist: { mode: 'all' } },
      });
      const p = await start('policy', ['--offline', '--config', config]);
      expect(await health(p)).toEqual({
        status: 200,
        body: { status: 'ok', stores: { greylist: 'up', reputation: 'up' }, lists: {}, problems: [] },
      });
      // Every client is greylisted on its first try (postgrey's way).
      const [first] = await askPolicy(p.port, [
        rcptRequest({
          client_address: '198.51.100.20',
          client_name: 'unknown',
          reverse_client_name: 'unknown',
          instance: 'g.1',
        }),
      ]);
      expect(first).toMatch(/^DEFER_IF_PERMIT |^4\d\d /);
      const { samples } = await scrape(p);
      expect(sum(samples, 'mxguard_greylist_outcomes_total', { outcome: 'new' })).toBe(1);
      expect(sum(samples, 'mxguard_store_operations_total', { store: 'greylist', outcome: 'ok' })).toBe(1);

      await redis.stop();
      let h = await health(p);
      // Each store's connection sees the server go on its own: wait (at most 5 s) for both.
      const bothDown = () => Object.values(h.body.stores as object).every((v) => v === 'down');
      for (let i = 0; i < 50 && !bothDown(); i++) {
        await new Promise((r) => setTimeout(r, 100));
        h = await health(p);
      }
      expect(h).toEqual({
        status: 503,
        body: {
          status: 'unhealthy',
          stores: { greylist: 'down', reputation: 'down' },
          lists: {},
          problems: ['store greylist is not reachable', 'store reputation is not reachable'],
        },
      });
      // A request now: the greylist store fails, counted as an error of the store.
      await askPolicy(p.port, [
        rcptRequest({
          client_address: '198.51.100.21',
          client_name: 'unknown',
          reverse_client_name: 'unknown',
          instance: 'g.2',
        }),
      ]);
      const after = await scrape(p);
      expect(
        sum(after.samples, 'mxguard_store_operations_total', { store: 'greylist', outcome: 'error' }),
      ).toBe(1);
    });
  });
});
