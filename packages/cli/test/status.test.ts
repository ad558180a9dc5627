import { createServer, type Server } from 'node:http';
import { type AddressInfo, connect } from 'node:net';
import { type Decision, ManualClock, reply, type Session } from '@mxguard/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Redactor } from '../src/privacy.js';
import { LIMITS, MINUTES, PASSED, StatusBoard } from '../src/status/board.js';
import { STATUS_CSP, type StatusProviders, statusHandler } from '../src/status/handler.js';
import { esc, MAX_ROWS, renderPage, search } from '../src/status/page.js';

// The status page as its own module: the bounded board of recent decisions and per-minute counts,
// and the page served by a plain node http server on a loopback port.

const T0 = Date.UTC(2026, 11, 1, 12, 0, 0);

function session(over: Partial<Session> = {}): Session {
  return {
    clientAddress: '203.0.113.9',
    stage: 'rcpt',
    helo: 'mail.example.net',
    mailFrom: 'alice@example.net',
    rcptTo: 'postmaster@example.com',
    ...over,
  } as Session;
}

function refused(check: string, over: Partial<Decision> = {}): Decision {
  return {
    action: 'reject',
    reply: reply(550, '5.7.1', `refused by ${check}`),
    check,
    reason: `${check} said no`,
    trace: [
      { check: 'relay', action: 'next', ms: 0.1 },
      { check, action: 'reject', code: 550, reason: `${check} said no`, ms: 0.2 },
    ],
    findings: [],
    ...over,
  };
}

const passed: Decision = {
  action: 'next',
  trace: [{ check: 'relay', action: 'next', ms: 0.1 }],
  findings: [],
};

describe('StatusBoard', () => {
  it('keeps the latest decisions newest first, at most maxEntries', () => {
    const clock = new ManualClock(T0);
    const board = new StatusBoard({ clock, maxEntries: 3 });
    for (let i = 0; i < 5; i++)
      board.record(session({ rcptTo: `u${i}@example.com` }), refused('helo-syntax'), i);
    expect(board.latest().map((d) => d.to)).toEqual(['u4@example.com', 'u3@example.com', 'u2@example.com']);
    expect(board.total).toBe(5);
    const d = board.latest()[0];
    expect(d).toMatchObject({
      session: '4',
      stage: 'rcpt',
      client: '203.0.113.9',
      helo: 'mail.example.net',
      from: 'alice@example.net',
      action: 'reject',
      code: 550,
      enhanced: '5.7.1',
      check: 'helo-syntax',
      time: T0,
    });
    expect(d?.trace.map((s) => `${s.check}:${s.action}`)).toEqual(['relay:next', 'helo-syntax:reject']);
  });

  it('keeps at most maxBytes: long client-chosen strings are clipped and the oldest entries dropped', () => {
    const board = new StatusBoard({ clock: new ManualClock(T0), maxEntries: 1000, maxBytes: 20_000 });
    const huge = 'x'.repeat(100_000);
    const long = refused('helo-syntax', {
      reason: huge,
      trace: Array.from({ length: 500 }, (_, i) => ({
        check: `c${i}`,
        action: 'next' as const,
        reason: huge,
        ms: 0,
      })),
    });
    for (let i = 0; i < 50; i++)
      board.record(session({ helo: huge, mailFrom: `${huge}@example.net` }), long, i);
    expect(board.bytes).toBeLessThanOrEqual(20_000);
    const kept = board.latest();
    expect(kept.length).toBeGreaterThan(0);
    expect(kept.length).toBeLessThan(50);
    const d = kept[0];
    expect(d?.helo?.length).toBe(LIMITS.field);
    expect(d?.reason?.length).toBe(LIMITS.text);
    expect(d?.trace.length).toBe(LIMITS.steps);
    expect(d?.traceDropped).toBe(500 - LIMITS.steps);
    expect(d?.trace[0]?.reason?.length).toBe(LIMITS.stepReason);
    // Each entry is bounded whatever the client sends: about 14 KB at these limits.
    expect(board.bytes / kept.length).toBeLessThan(16_000);
  });

  it('refuses bounds that are not whole numbers >= 1', () => {
    const clock = new ManualClock(T0);
    expect(() => new StatusBoard({ clock, maxEntries: 0 })).toThrow(/maxEntries/);
    expect(() => new StatusBoard({ clock, maxBytes: Number.NaN })).toThrow(/maxBytes/);
  });

  it('counts verdicts a minute by the check that decided, over the last hour only', () => {
    const clock = new ManualClock(T0);
    const board = new StatusBoard({ clock });
    board.record(session(), refused('helo-syntax'));
    board.record(session(), refused('helo-syntax'));
    board.record(session(), passed);
    clock.advance(5 * 60_000);
    board.record(
      session(),
      refused('sender-domain', { action: 'defer', reply: reply(450, '4.1.8', 'try later') }),
    );
    let hour = board.lastHour();
    expect(hour).toHaveLength(MINUTES);
    expect(hour[MINUTES - 1]?.at).toBe(T0 + 5 * 60_000);
    expect(hour[MINUTES - 6]?.checks.get('helo-syntax')).toEqual({ reject: 2, defer: 0, accept: 0, next: 0 });
    expect(hour[MINUTES - 6]?.checks.get(PASSED)?.next).toBe(1);
    expect(hour[MINUTES - 1]?.checks.get('sender-domain')?.defer).toBe(1);
    // An hour later the first minute is gone; five minutes after that, all of it.
    clock.advance(56 * 60_000);
    hour = board.lastHour();
    expect(hour.some((m) => m.checks.has('helo-syntax'))).toBe(false);
    expect(hour.some((m) => m.checks.has('sender-domain'))).toBe(true);
    clock.advance(5 * 60_000);
    expect(board.lastHour().every((m) => m.checks.size === 0)).toBe(true);
    // The decisions themselves stay in the list.
    expect(board.latest()).toHaveLength(4);
  });

  it('files a decision under the time it was made when told', () => {
    const clock = new ManualClock(T0 + 10 * 60_000);
    const board = new StatusBoard({ clock });
    board.record(session(), refused('helo-syntax'), 'x', T0 + 2 * 60_000);
    expect(board.latest()[0]?.time).toBe(T0 + 2 * 60_000);
    expect(board.lastHour()[MINUTES - 9]?.checks.get('helo-syntax')?.reject).toBe(1);
  });

  it('counts a dry run by what it would have done', () => {
    const board = new StatusBoard({ clock: new ManualClock(T0) });
    board.record(session(), {
      ...passed,
      would: { action: 'reject', check: 'helo-syntax', reply: reply(550, '5.7.1', 'bad helo'), reason: 'r' },
    });
    expect(board.latest()[0]).toMatchObject({
      action: 'next',
      would: 'reject',
      check: 'helo-syntax',
      code: 550,
    });
    expect(board.lastHour().at(-1)?.checks.get('helo-syntax')?.reject).toBe(1);
  });

  it('counts at most maxChecks names a minute, the rest as (other)', () => {
    const board = new StatusBoard({ clock: new ManualClock(T0), maxChecks: 2 });
    for (const c of ['a', 'b', 'c', 'd']) board.record(session(), refused(c));
    const m = board.lastHour().at(-1)?.checks;
    expect([...(m?.keys() ?? [])]).toEqual(['a', 'b', '(other)']);
    expect(m?.get('(other)')?.reject).toBe(2);
  });

  it('keeps addresses as the privacy level says, and a search in clear finds a hashed sender', () => {
    const redactor = new Redactor('hash');
    const board = new StatusBoard({ clock: new ManualClock(T0), redactor });
    board.record(session(), refused('helo-syntax', { reason: 'alice@example.net from 203.0.113.9' }));
    board.record(
      session({ mailFrom: 'bob@example.org', clientAddress: '198.51.100.7' }),
      refused('helo-syntax'),
    );
    const all = board.latest();
    const text = JSON.stringify(all);
    expect(text).not.toContain('alice');
    expect(text).not.toContain('203.0.113.9');
    expect(all[1]?.from).toBe(`${redactor.hash('alice')}@example.net`);
    expect(all[1]?.client).toBe(redactor.hash('203.0.113.9'));
    expect(search(board, all, 'alice@example.net').map((d) => d.client)).toEqual([
      redactor.hash('203.0.113.9'),
    ]);
    expect(search(board, all, '198.51.100.7').map((d) => d.from)).toEqual([
      `${redactor.hash('bob')}@example.org`,
    ]);
    expect(search(board, all, 'example.org')).toHaveLength(1);
    expect(search(board, all, 'helo-syntax alice@example.net')).toHaveLength(1);
    expect(search(board, all, '')).toHaveLength(2);

    const truncating = new StatusBoard({ clock: new ManualClock(T0), redactor: new Redactor('truncate') });
    truncating.record(session(), refused('helo-syntax'));
    expect(truncating.latest()[0]).toMatchObject({ client: '203.0.113.0/24', from: '*@example.net' });
  });
});

describe('status page over http', () => {
  const clock = new ManualClock(T0 + 30_000);
  const board = new StatusBoard({ clock });
  let health: Awaited<ReturnType<NonNullable<StatusProviders['health']>>> = {
    ok: false,
    stores: { greylist: 'up', reputation: 'down' },
    lists: { 'zen.example ip': 'healthy', 'broken.example ip': 'disabled' },
    problems: ['store reputation is not reachable'],
  };
  const handle = statusHandler(board, {
    title: 'mxguard serve',
    health: async () => health,
    notes: () => ['offline: DNS checks skipped'],
    now: () => clock.now(),
  });
  let server: Server;
  let base: string;
  beforeAll(async () => {
    server = createServer((req, res) => {
      if (!handle(req, res)) res.writeHead(404).end('not ours\n');
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterAll(async () => {
    await new Promise((r) => server.close(r));
  });

  const HOSTILE_HELO = '<script>alert("helo")</script>';
  const HOSTILE_FROM = '"<img src=x onerror=alert(1)>"@example.net';

  it('shows the chart, the decisions with their traces, the lists and the stores', async () => {
    board.record(session(), refused('helo-claims-us'), 's1');
    board.record(
      session({ helo: HOSTILE_HELO, mailFrom: HOSTILE_FROM, clientAddress: '198.51.100.7' }),
      refused('helo-syntax'),
      's2',
    );
    board.record(session({ clientAddress: '192.0.2.1' }), passed, 's3');
    const res = await fetch(`${base}/status`);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('text/html; charset=utf-8');
    const html = await res.text();
    // One bar a check that decided in this minute, each named by its check.
    expect(html).toMatch(/<svg id="chart"/);
    expect(html).toMatch(/<rect class="bar c\d+" data-check="helo-claims-us"/);
    expect(html).toMatch(/<rect class="bar c\d+" data-check="helo-syntax"/);
    expect(html).toContain('no check objected: 1');
    expect(html).toContain('550 5.7.1 refused by helo-claims-us');
    expect(html).toContain('<details><summary>trace (2)</summary>');
    expect(html).toContain('<b>helo-claims-us</b> reject 550 — helo-claims-us said no');
    expect(html).toMatch(/<td>zen\.example ip<\/td><td class="state good">healthy<\/td>/);
    expect(html).toMatch(/<td>broken\.example ip<\/td><td class="state bad">disabled<\/td>/);
    expect(html).toMatch(/<td>reputation<\/td><td class="state bad">down<\/td>/);
    expect(html).toContain('<span id="overall" class="state bad">degraded</span>');
    expect(html).toContain('offline: DNS checks skipped');
    expect(html).toContain('<li class="problem">store reputation is not reachable</li>');
    expect(html).toContain('3 of 3');
    // Each row names its session, the `session` of its log line.
    expect(html).toMatch(/<td class="time">\d\d:\d\d:\d\d<div class="session">s1<\/div><\/td>/);
    expect(html).toContain('<div class="session">s3</div>');
  });

  it('escapes what the client chose: no tag of theirs reaches the page', async () => {
    const html = await (
      await fetch(`${base}/status?q=${encodeURIComponent('"><script>alert(2)</script>')}`)
    ).text();
    expect(html).not.toContain('<script>alert');
    expect(html).not.toContain('<img src=x');
    expect(html).not.toContain('"><script>');
    const all = await (await fetch(`${base}/status`)).text();
    expect(all).toContain(esc(HOSTILE_HELO));
    expect(all).toContain('&quot;&lt;img src=x onerror=alert(1)&gt;&quot;@example.net');
    expect(all).not.toContain('<img src=x');
    // The only script is the page's own file.
    expect(all.match(/<script/g)).toHaveLength(1);
    expect(all).toContain('<script src="/status.js" defer></script>');
    // No tag has an event handler or a style attribute (in attribute values, quotes are escaped).
    expect(all).not.toMatch(/<[a-z]+(\s+[a-z-]+="[^"]*")*\s+(on[a-z]+|style)=/);
  });

  it('searches with ?q=: every word must match', async () => {
    const html = await (await fetch(`${base}/status?q=198.51.100.7`)).text();
    expect(html).toContain('<span id="shown">1 of 1</span>');
    expect(html).toContain('helo-syntax');
    expect(html).not.toContain('refused by helo-claims-us');
    const none = await (await fetch(`${base}/status?q=nobody.example`)).text();
    expect(none).toContain('No decision matches.');
  });

  it('shows the newest MAX_ROWS decisions; the search reaches the older ones', async () => {
    const many = new StatusBoard({ clock: new ManualClock(T0) });
    for (let i = 0; i < MAX_ROWS + 50; i++) many.record(session({ rcptTo: `u${i}@example.com` }), passed, i);
    const html = renderPage(many, { title: 't', now: T0 }, '');
    expect(html.match(/<tr class="decision/g)).toHaveLength(MAX_ROWS);
    expect(html).toContain(`${MAX_ROWS + 50} kept, search to find the older ones`);
    expect(html).not.toContain('u0@example.com');
    const old = renderPage(many, { title: 't', now: T0 }, 'u0@example.com');
    expect(old.match(/<tr class="decision/g)).toHaveLength(1);
  });

  it('sends security headers, and the script and stylesheet it names', async () => {
    const res = await fetch(`${base}/status`);
    expect(res.headers.get('content-security-policy')).toBe(STATUS_CSP);
    expect(STATUS_CSP).not.toContain('unsafe-inline');
    expect(res.headers.get('x-content-type-options')).toBe('nosniff');
    expect(res.headers.get('x-frame-options')).toBe('DENY');
    const js = await fetch(`${base}/status.js`);
    expect(js.headers.get('content-type')).toBe('text/javascript; charset=utf-8');
    expect(await js.text()).toContain("addEventListener('input'");
    const css = await fetch(`${base}/status.css`);
    expect(css.headers.get('content-type')).toBe('text/css; charset=utf-8');
    const root = await fetch(`${base}/`, { redirect: 'manual' });
    expect(root.status).toBe(302);
    expect(root.headers.get('location')).toBe('/status');
  });

  it('is read-only: 405 for anything but GET and HEAD; HEAD has no body', async () => {
    for (const method of ['POST', 'PUT', 'DELETE', 'PATCH']) {
      const res = await fetch(`${base}/status`, { method, body: method === 'DELETE' ? null : 'x' });
      expect(res.status).toBe(405);
      expect(res.headers.get('allow')).toBe('GET, HEAD');
    }
    const head = await fetch(`${base}/status`, { method: 'HEAD' });
    expect(head.status).toBe(200);
    expect(Number(head.headers.get('content-length'))).toBeGreaterThan(1000);
    expect(await head.text()).toBe('');
    expect((await fetch(`${base}/other`)).status).toBe(404);
  });

  it('leaves a request target that is not a URL to the server it is mounted on', async () => {
    // node's HTTP parser lets `http://[` through as req.url; `new URL` throws on it.
    const head = await new Promise<string>((resolve, reject) => {
      const c = connect(Number(new URL(base).port), '127.0.0.1', () =>
        c.write('GET http://[ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n'),
      );
      let got = '';
      c.setEncoding('utf8');
      c.on('data', (d: string) => {
        got += d;
      });
      c.on('end', () => resolve(got));
      c.on('error', reject);
    });
    expect(head).toMatch(/^HTTP\/1\.1 404 /);
    expect(head).toContain('not ours');
  });

  it('says health is not known when the provider fails, and still answers', async () => {
    const failing = statusHandler(board, {
      title: 'mxguard policy',
      health: async () => {
        throw new Error('redis <gone>');
      },
    });
    const s = createServer((req, res) => {
      if (!failing(req, res)) res.writeHead(404).end();
    });
    await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
    try {
      const html = await (await fetch(`http://127.0.0.1:${(s.address() as AddressInfo).port}/status`)).text();
      expect(html).toContain('error: redis &lt;gone&gt;');
      expect(html).toContain('degraded');
    } finally {
      await new Promise((r) => s.close(r));
    }
    health = { ok: true, stores: {}, lists: {} };
    const ok = await (await fetch(`${base}/status`)).text();
    expect(ok).toContain('<span id="overall" class="state good">healthy</span>');
    expect(ok).toContain('no DNS lists configured');
  });
});
