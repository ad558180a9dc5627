import { mkdtempSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Session } from '@mxguard/core';
import type { Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { launchChromium, watchedPage } from '../../../testing/browser.js';
import { askPolicy, type Running, startMxguard, swaksAsync as swaks } from '../../../testing/mxguard.js';
import { rcptRequest } from '../../../testing/postfix.js';
import { createRuntime, jsonLogger } from '../src/index.js';
import type { Runtime } from '../src/runtime.js';
import { StatusBoard } from '../src/status/board.js';
import { statusHandler } from '../src/status/handler.js';

// The status page in a real browser (Debian's chromium, headless, through playwright-core): fed by
// decisions of the real chain, served by a plain node http server on a loopback port.

/**
 * A generous upper bound on one test here (a browser page, or a server started and a page): each
 * took 3 to 9 s with a load average of 10 on 2 cores; ten times that leaves room for a CI run
 * where every test file shares the cores. It decides nothing but a hang.
 */
const BROWSER_TEST_MS = 90_000;

const HOSTILE_HELO = '<img src=x onerror=alert(1)>';
const HOSTILE_FROM = '"<script>alert(2)</script>"@evil.example';

let browser: Browser;
let server: Server;
let base: string;
let rt: Runtime;
const board = new StatusBoard({ clock: { now: () => Date.now() } });

async function decide(s: Partial<Session>): Promise<void> {
  const session = {
    clientAddress: '192.0.2.10',
    stage: 'rcpt',
    helo: 'mail.example.net',
    mailFrom: 'alice@example.net',
    rcptTo: 'postmaster@example.com',
    ...s,
  } as Session;
  const d = await rt.policy.chain.evaluate(session);
  board.record(session, d, 'test');
}

beforeAll(async () => {
  rt = await createRuntime(
    { ourDomains: ['example.com'], ourHosts: ['mx.example.com'] },
    { offline: true, log: jsonLogger(() => {}) },
  );
  await decide({ helo: 'localhost', clientAddress: '203.0.113.9' });
  await decide({ helo: HOSTILE_HELO, mailFrom: HOSTILE_FROM, clientAddress: '198.51.100.7' });
  await decide({});
  const health = async () => ({
    ok: true,
    stores: { greylist: 'up' },
    lists: { 'zen.example ip': 'healthy' },
  });
  const handle = statusHandler(board, { title: 'mxguard policy', health });
  server = createServer((req, res) => {
    if (!handle(req, res)) res.writeHead(404).end();
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  browser = await launchChromium();
}, 60_000);

afterAll(async () => {
  await browser?.close();
  await new Promise((r) => server?.close(r));
  await rt?.close();
});

describe('status page in headless chromium', () => {
  it(
    'loads with its chart, the decisions and their traces; the search filters; no errors',
    async () => {
      const { page, trouble } = await watchedPage(browser);
      const res = await page.goto(`${base}/status`);
      expect(res?.status()).toBe(200);
      await page.waitForLoadState('load');
      // The chart: a bar for the check that refused localhost, drawn (it has a height).
      const bar = page.locator('svg#chart rect.bar[data-check="helo-claims-us"]');
      expect(await bar.count()).toBe(1);
      const box = await bar.boundingBox();
      expect(box?.height ?? 0).toBeGreaterThan(1);
      expect(await page.locator('.legend li[data-check="helo-claims-us"]').textContent()).toContain(
        '1 rejected',
      );
      // The decision, with the deciding check and its reply.
      const rows = page.locator('#decisions tbody tr');
      expect(await rows.count()).toBe(3);
      const refused = page.locator('#decisions tbody tr', { hasText: '203.0.113.9' });
      expect(await refused.locator('td.helo').textContent()).toBe('localhost');
      expect(await refused.locator('td.check').textContent()).toBe('helo-claims-us');
      expect(await refused.locator('td.verdict').textContent()).toBe('reject');
      expect(await refused.locator('td.reply').textContent()).toMatch(/^5\d\d 5\.\d+\.\d+ /);
      // Its trace opens.
      await refused.locator('summary').click();
      expect(await refused.locator('li.step.reject b').textContent()).toBe('helo-claims-us');
      expect(await refused.locator('li.step.reject').isVisible()).toBe(true);
      // Typing filters as you type.
      await page.fill('#q', '203.0.113');
      expect(await page.locator('#decisions tbody tr:visible').count()).toBe(1);
      expect(await page.textContent('#shown')).toBe('1 of 3');
      await page.fill('#q', 'postmaster@example.com');
      expect(await page.locator('#decisions tbody tr:visible').count()).toBe(3);
      // Enter asks the server.
      await page.fill('#q', 'evil.example');
      await Promise.all([page.waitForURL(/\?q=evil\.example$/), page.press('#q', 'Enter')]);
      expect(await page.locator('#decisions tbody tr').count()).toBe(1);
      expect(trouble).toEqual({ console: [], errors: [], failed: [], dialogs: [] });
      await page.close();
    },
    BROWSER_TEST_MS,
  );

  it(
    'shows the HELO and sender an attacker chose as text: no element of theirs, no script runs',
    async () => {
      const { page, trouble } = await watchedPage(browser);
      await page.goto(`${base}/status`);
      await page.waitForLoadState('load');
      const row = page.locator('#decisions tbody tr', { hasText: '198.51.100.7' });
      expect(await row.locator('td.helo').textContent()).toBe(HOSTILE_HELO);
      expect(await row.locator('td.from').textContent()).toBe(HOSTILE_FROM);
      expect(await page.locator('img').count()).toBe(0);
      expect(await page.locator('script').count()).toBe(1);
      // The same through the search box and the query string.
      await page.goto(`${base}/status?q=${encodeURIComponent('"><script>alert(3)</script>')}`);
      expect(await page.inputValue('#q')).toBe('"><script>alert(3)</script>');
      expect(await page.locator('script').count()).toBe(1);
      expect(trouble.dialogs).toEqual([]);
      expect(trouble.errors).toEqual([]);
      expect(trouble.console).toEqual([]);
      await page.close();
    },
    BROWSER_TEST_MS,
  );
  it(
    'reloads itself every 30 s while live is ticked, not while the admin types',
    async () => {
      const { page, trouble } = await watchedPage(browser);
      // The page's timers run on a clock the test moves: no waiting.
      await page.clock.install();
      await page.goto(`${base}/status`);
      const before = await page.locator('#decisions tbody tr').count();
      await page.check('#live');
      await decide({ helo: 'live.example.net', clientAddress: '192.0.2.77' });
      await Promise.all([page.waitForEvent('load'), page.clock.runFor(30_000)]);
      expect(await page.locator('#decisions tbody tr').count()).toBe(before + 1);
      expect(await page.locator('#decisions tbody tr', { hasText: 'live.example.net' }).count()).toBe(1);
      // Ticked it stays, for the tab.
      expect(await page.isChecked('#live')).toBe(true);
      // While the admin types, no reload takes the search box away.
      await page.fill('#q', 'live.example');
      await page.clock.runFor(61_000);
      expect(await page.inputValue('#q')).toBe('live.example');
      expect(await page.textContent('#shown')).toBe(`1 of ${before + 1}`);
      expect(trouble).toEqual({ console: [], errors: [], failed: [], dialogs: [] });
      await page.close();
    },
    BROWSER_TEST_MS,
  );
});

describe('mxguard policy --http: the page of the running server', () => {
  let policy: Running | undefined;
  afterAll(async () => {
    await policy?.stop();
  });

  it(
    'shows a decision made a moment earlier, its chart bar and trace, with addresses as the log has them; keeps them across a reload',
    async () => {
      const dir = mkdtempSync(join(tmpdir(), 'mxguard-status-'));
      const config = join(dir, 'config.json');
      writeFileSync(config, JSON.stringify({ ourDomains: ['example.com'], ourHosts: ['mx.example.com'] }));
      policy = await startMxguard('policy', [
        '--offline',
        '--config',
        config,
        '--http',
        '127.0.0.1:0',
        '--log-privacy',
        'hash',
      ]);
      // A HELO that claims to be us: refused by helo-claims-us.
      const [answer] = await askPolicy(policy.port, [
        rcptRequest({ helo_name: 'localhost', client_address: '203.0.113.9', sender: 'mallory@example.net' }),
      ]);
      expect(answer).toMatch(/^5\d\d /);
      // And a HELO an attacker chose, through Postfix's protocol.
      await askPolicy(policy.port, [
        rcptRequest({ helo_name: HOSTILE_HELO, client_address: '198.51.100.7', instance: 'x.2' }),
      ]);
      const logged = JSON.parse(await policy.waitLog(/"event":"decision"/)) as Record<string, unknown>;
      expect(logged.from).toMatch(/^h:[0-9a-f]{12}@example\.net$/);

      const { page, trouble } = await watchedPage(browser);
      const res = await page.goto(`http://${policy.http}/`);
      expect(res?.status()).toBe(200);
      expect(page.url()).toBe(`http://${policy.http}/status`);
      expect(await page.title()).toMatch(/^mxguard policy on .+ status$/);
      expect(await page.locator('svg#chart rect.bar[data-check="helo-claims-us"]').count()).toBe(1);
      const hostile = page.locator('#decisions tbody tr').first();
      expect(await hostile.locator('td.helo').textContent()).toBe(HOSTILE_HELO);
      expect(await page.locator('img').count()).toBe(0);
      const row = page.locator('#decisions tbody tr').nth(1);
      expect(await row.locator('td.check').textContent()).toBe('helo-claims-us');
      expect(await row.locator('td.verdict').textContent()).toBe('reject');
      expect(await row.locator('td.helo').textContent()).toBe('localhost');
      // The sender and client as the log wrote them: hashed, the domain kept.
      expect(await row.locator('td.from').textContent()).toBe(logged.from);
      expect(await row.locator('td.client').textContent()).toBe(logged.client);
      expect(await row.locator('td.reply').textContent()).toContain(`${logged.code} ${logged.enhanced}`);
      await row.locator('summary').click();
      expect(await row.locator('li.step.reject b').textContent()).toBe('helo-claims-us');
      expect((await page.textContent('body')) ?? '').not.toContain('mallory');
      // The search: as you type, and by the sender in clear on the server.
      await page.fill('#q', 'nobody.example');
      expect(await page.locator('#decisions tbody tr:visible').count()).toBe(0);
      await page.fill('#q', 'localhost');
      expect(await page.locator('#decisions tbody tr:visible').count()).toBe(1);
      await page.goto(`http://${policy.http}/status?q=mallory%40example.net`);
      expect(await page.locator('#decisions tbody tr').count()).toBe(1);
      // Stores from /health (memory stores are up).
      expect(await page.locator('table.states td.state.good').count()).toBeGreaterThan(0);
      expect(trouble).toEqual({ console: [], errors: [], failed: [], dialogs: [] });
      await page.close();
      // Read-only.
      const post = await fetch(`http://${policy.http}/status`, { method: 'POST', body: 'q=x' });
      expect(post.status).toBe(405);

      // A reload (SIGHUP) to a dry run: the page keeps what it had, and shows the new config's
      // notes and what it would have done.
      writeFileSync(
        config,
        JSON.stringify({ ourDomains: ['example.com'], ourHosts: ['mx.example.com'], mode: 'warn' }),
      );
      policy.child.kill('SIGHUP');
      await policy.waitLog(/"event":"reloaded"/);
      const [dry] = await askPolicy(policy.port, [
        rcptRequest({ helo_name: 'localhost', client_address: '203.0.113.9', instance: 'r.3' }),
      ]);
      expect(dry).toBe('DUNNO');
      const html = await (await fetch(`http://${policy.http}/status?q=localhost`)).text();
      expect(html.match(/<tr class="decision/g)).toHaveLength(2);
      expect(html).toContain('<td class="verdict">would reject</td>');
      expect(html).toContain('mode warn: a dry run');
      expect(html).toContain('helo-claims-us: 2 rejected');
    },
    BROWSER_TEST_MS,
  );
});

describe('mxguard serve --http: the page of the gateway', () => {
  let serve: Running | undefined;
  afterAll(async () => {
    await serve?.stop();
  });

  it(
    'shows the SMTP session swaks had refused a moment earlier',
    async () => {
      const dir = mkdtempSync(join(tmpdir(), 'mxguard-status-serve-'));
      const config = join(dir, 'config.json');
      writeFileSync(config, JSON.stringify({ ourDomains: ['example.com'], ourHosts: ['mx.example.com'] }));
      serve = await startMxguard('serve', [
        '--offline',
        '--config',
        config,
        '--spool',
        join(dir, 'spool'),
        '--http',
        '127.0.0.1:0',
      ]);
      const out = await swaks(serve.address, [
        '--helo',
        'localhost',
        '--from',
        'alice@example.net',
        '--to',
        'postmaster@example.com',
      ]);
      expect(out).toMatch(/<\*\* +550 5\.7\.1 /);

      const { page, trouble } = await watchedPage(browser);
      await page.goto(`http://${serve.http}/status`);
      expect(await page.title()).toMatch(/^mxguard serve on .+ status$/);
      expect(await page.locator('svg#chart rect.bar[data-check="helo-claims-us"]').count()).toBe(1);
      const row = page.locator('#decisions tbody tr', { hasText: 'helo-claims-us' });
      expect(await row.count()).toBe(1);
      expect(await row.locator('td.client').textContent()).toBe('127.0.0.1');
      expect(await row.locator('td.helo').textContent()).toBe('localhost');
      expect(await row.locator('td.from').textContent()).toBe('alice@example.net');
      expect(await row.locator('td.to').textContent()).toBe('postmaster@example.com');
      expect(await row.locator('td.reply').textContent()).toMatch(/^550 5\.7\.1 /);
      await page.fill('#q', 'alice@example.net');
      expect(await page.locator('#decisions tbody tr:visible', { hasText: 'helo-claims-us' }).count()).toBe(
        1,
      );
      expect(trouble).toEqual({ console: [], errors: [], failed: [], dialogs: [] });
      await page.close();
    },
    BROWSER_TEST_MS,
  );
});
