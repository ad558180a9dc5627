import { mkdtemp, rm } from 'node:fs/promises';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type Chain, chain, currentDeadline, ManualClock, type Session } from '@mxguard/core';
import { formatRequest, type PolicyServer, startPolicyServer, UNAVAILABLE } from '@mxguard/postfix';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { byRecipient, memoryLogger, PolicyClient, rcptRequest, testChain } from './helpers.js';

describe.each([
  ['TCP', 'tcp'],
  ['a UNIX socket', 'unix'],
] as const)('the policy server over %s', (_name, kind) => {
  let server: PolicyServer;
  let dir: string;
  const log = memoryLogger();
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'mxguard-policy-'));
    server = await startPolicyServer({
      listen: kind === 'tcp' ? { host: '127.0.0.1', port: 0 } : { path: join(dir, 'policy.sock') },
      chain: testChain,
      log,
    });
  });
  afterAll(async () => {
    await server.close();
    await rm(dir, { recursive: true, force: true });
  });

  /**
   * A server whose chain holds each request `holds` picks (by recipient) until `open()`: `inside`
   * settles once one is held. byRecipient then answers as the shared server does.
   */
  async function gated(sock: string, holds: (rcpt: string | undefined) => boolean) {
    let open!: () => void;
    const gate = new Promise<void>((r) => (open = r));
    let entered!: () => void;
    const inside = new Promise<void>((r) => (entered = r));
    const gateCheck = {
      name: 'gate',
      stage: 'rcpt' as const,
      async run(s: Session) {
        if (holds(s.rcptTo)) {
          entered();
          await gate;
        }
        return { action: 'next' as const };
      },
    };
    const server = await startPolicyServer({
      listen: kind === 'tcp' ? { host: '127.0.0.1', port: 0 } : { path: join(dir, sock) },
      chain: chain([gateCheck, byRecipient]),
      log,
    });
    return { server, inside, open };
  }

  it('answers each verdict with the action Postfix needs', async () => {
    const c = await PolicyClient.open(server);
    const ask = (local: string) => c.ask(rcptRequest({ recipient: `${local}@example.com` }));
    expect(await ask('bob')).toBe('DUNNO');
    expect(await ask('ok')).toBe('OK');
    expect(await ask('reject')).toBe('550 5.7.1 go away (by-recipient)');
    expect(await ask('defer')).toBe('451 4.7.1 come back later (by-recipient)');
    expect(await ask('dip')).toBe('DEFER_IF_PERMIT 4.7.1 maybe later (by-recipient)');
    // A check that throws: the chain answers 451 4.3.5, never a 5xx.
    expect(await ask('boom')).toBe('451 4.3.5 Server configuration problem (by-recipient)');
    c.close();
    await c.closed;
  });

  it('answers many requests on one connection, and requests sent ahead in order', async () => {
    const c = await PolicyClient.open(server);
    for (let i = 0; i < 50; i++)
      expect(await c.ask(rcptRequest({ recipient: 'bob@example.com' }))).toBe('DUNNO');
    const two =
      formatRequest(rcptRequest({ recipient: 'reject@example.com' })) +
      formatRequest(rcptRequest({ recipient: 'ok@example.com' }));
    const first = c.answer();
    const second = c.askRaw(two);
    expect(await first).toBe('550 5.7.1 go away (by-recipient)');
    expect(await second).toBe('OK');
    c.close();
  });

  it('answers requests that arrive, each in its own write, while one is judged: in order', async () => {
    // The first request is held in its check until the others have been sent, one write each, so
    // they arrive while the connection is busy: it stops reading, and reads on once answered.
    const { server: slow, inside, open } = await gated('slow.sock', (r) => r === 'first@example.com');
    try {
      const c = await PolicyClient.open(slow);
      const answers = [c.askRaw(formatRequest(rcptRequest({ recipient: 'first@example.com' })))];
      await inside;
      for (const r of ['reject', 'ok', 'bob', 'defer']) {
        answers.push(c.askRaw(formatRequest(rcptRequest({ recipient: `${r}@example.com` }))));
        await new Promise((res) => setTimeout(res, 20));
      }
      open();
      expect(await Promise.all(answers)).toEqual([
        'DUNNO',
        '550 5.7.1 go away (by-recipient)',
        'OK',
        'DUNNO',
        '451 4.7.1 come back later (by-recipient)',
      ]);
      // And the connection reads on: one more, asked and answered.
      expect(await c.ask(rcptRequest({ recipient: 'ok@example.com' }))).toBe('OK');
      c.close();
      await c.closed;
    } finally {
      await slow.close();
    }
  });

  it('answers a client that half-closes while its request is judged, then closes', async () => {
    const { server: slow, inside, open } = await gated('slow-end.sock', () => true);
    try {
      const c = await PolicyClient.open(slow);
      const answer = c.askRaw(formatRequest(rcptRequest({ recipient: 'reject@example.com' })));
      await inside;
      c.socket.end();
      // The end reaches the server while it judges; the answer must still go out before its FIN.
      await new Promise((r) => setTimeout(r, 50));
      open();
      expect(await answer).toBe('550 5.7.1 go away (by-recipient)');
      await c.closed;
    } finally {
      await slow.close();
    }
  });

  it('answers a client that half-closes after its request, then closes', async () => {
    const c = await PolicyClient.open(server);
    const answer = c.askRaw(formatRequest(rcptRequest({ recipient: 'reject@example.com' })));
    c.socket.end();
    expect(await answer).toBe('550 5.7.1 go away (by-recipient)');
    await c.closed;
  });

  it('answers DUNNO to what it does not judge', async () => {
    const c = await PolicyClient.open(server);
    expect(await c.ask(rcptRequest({ protocol_state: 'VRFY', recipient: 'reject@example.com' }))).toBe(
      'DUNNO',
    );
    expect(await c.ask({ request: 'something_else', recipient: 'reject@example.com' })).toBe('DUNNO');
    c.close();
  });

  it.each([
    ['a line without "="', 'request=smtpd_access_policy\nhello\n\n'],
    ['an over-long line', `request=smtpd_access_policy\nsender=${'x'.repeat(5000)}\n\n`],
    ['too many attributes', `${Array.from({ length: 101 }, (_, i) => `a${i}=1`).join('\n')}\n\n`],
    ['binary garbage', Buffer.from([0, 1, 2, 0xff, 0xfe, 10, 10])],
    ['more than 100 requests sent ahead', Array.from({ length: 2000 }, (_, i) => `k=${i}\n\n`).join('')],
  ])('closes the connection on %s, logs it, and goes on serving', async (_what, raw) => {
    const c = await PolicyClient.open(server);
    const before = log.lines.length;
    await expect(c.askRaw(raw)).rejects.toThrow('connection closed');
    expect(log.lines.slice(before).some((l) => l.msg === 'malformed policy request: closing')).toBe(true);
    const d = await PolicyClient.open(server);
    expect(await d.ask(rcptRequest({ recipient: 'reject@example.com' }))).toMatch(/^550 5\.7\.1 /);
    d.close();
  });
});

describe('limits and failures', () => {
  it('serves a connection beyond maxConnections by closing the longest idle one', async () => {
    const log = memoryLogger();
    const server = await startPolicyServer({
      listen: { host: '127.0.0.1', port: 0 },
      chain: testChain,
      log,
      limits: { maxConnections: 2 },
    });
    try {
      const a = await PolicyClient.open(server);
      const b = await PolicyClient.open(server);
      expect(await a.ask(rcptRequest())).toBe('DUNNO');
      expect(await b.ask(rcptRequest())).toBe('DUNNO');
      const c = await PolicyClient.open(server);
      expect(await c.ask(rcptRequest({ recipient: 'ok@example.com' }))).toBe('OK');
      // a asked longest ago: it made room; b goes on.
      await a.closed;
      expect(log.lines.some((l) => l.msg === 'policy connection closed: longest idle, slot needed')).toBe(
        true,
      );
      expect(await b.ask(rcptRequest())).toBe('DUNNO');
      expect(server.connections).toBe(2);
      b.close();
      c.close();
    } finally {
      await server.close();
    }
  });

  it('closes an idle connection', async () => {
    const log = memoryLogger();
    const server = await startPolicyServer({
      listen: { host: '127.0.0.1', port: 0 },
      chain: testChain,
      log,
      limits: { idleTimeout: 200 },
    });
    try {
      // Nothing is sent: only the server's idle timer can end this connection.
      const c = await PolicyClient.open(server);
      await c.closed;
      expect(log.lines.some((l) => l.msg === 'policy connection idle: closed')).toBe(true);
    } finally {
      await server.close();
    }
  });

  it('answers DEFER_IF_PERMIT, never 5xx, when the chain or enrich fails or hangs', async () => {
    const log = memoryLogger();
    const broken: Chain = {
      ...testChain,
      evaluate: () => Promise.reject(new Error('store down')),
    };
    const hanging: Chain = { ...testChain, evaluate: () => new Promise(() => {}) };
    // Only the hanging chain can reach the request timeout; the others answer at once.
    for (const [c, enrich, requestTimeout] of [
      [broken, undefined, 60_000],
      [testChain, () => Promise.reject(new Error('resolver down')), 60_000],
      [hanging, undefined, 100],
    ] as const) {
      const server = await startPolicyServer({
        listen: { host: '127.0.0.1', port: 0 },
        chain: c,
        enrich,
        log,
        limits: { requestTimeout },
      });
      const client = await PolicyClient.open(server);
      expect(await client.ask(rcptRequest({ recipient: 'reject@example.com' }))).toBe(UNAVAILABLE);
      client.close();
      await server.close();
    }
    const errors = log.lines.filter((l) => l.level === 'error').map((l) => l.msg);
    expect(errors).toEqual(['policy evaluation failed', 'policy enrich failed', 'policy request timed out']);
  });

  it('deadlineContext: the lookups read the deadline by default; without it, none, and the budget holds', async () => {
    const log = memoryLogger();
    // A check that says whether it found a deadline, and one that never answers.
    const reads: Chain = {
      ...testChain,
      evaluate: async () => ({
        action: 'next',
        trace: [],
        findings: [],
        reason: currentDeadline() ? 'deadline' : 'none',
      }),
    };
    const hanging: Chain = { ...testChain, evaluate: () => new Promise(() => {}) };
    const seen: string[] = [];
    for (const deadlineContext of [undefined, true, false]) {
      const server = await startPolicyServer({
        listen: { host: '127.0.0.1', port: 0 },
        chain: reads,
        log: { ...log, decision: (r) => seen.push(String((r as { reason?: string }).reason)) },
        ...(deadlineContext === undefined ? {} : { deadlineContext }),
      });
      const client = await PolicyClient.open(server);
      expect(await client.ask(rcptRequest())).toBe('DUNNO');
      client.close();
      await server.close();
    }
    expect(seen).toEqual(['deadline', 'deadline', 'none']);
    // An enrich reads it (settleBy): the context is carried for it whatever the option says.
    const enriched = await startPolicyServer({
      listen: { host: '127.0.0.1', port: 0 },
      chain: reads,
      enrich: async () => ({}),
      log: { ...log, decision: (r) => seen.push(String((r as { reason?: string }).reason)) },
      deadlineContext: false,
    });
    const c1 = await PolicyClient.open(enriched);
    expect(await c1.ask(rcptRequest())).toBe('DUNNO');
    c1.close();
    await enriched.close();
    expect(seen.at(-1)).toBe('deadline');
    // Without the context, a chain that hangs is still answered when the budget runs out.
    const server = await startPolicyServer({
      listen: { host: '127.0.0.1', port: 0 },
      chain: hanging,
      log,
      limits: { requestTimeout: 100 },
      deadlineContext: false,
    });
    const client = await PolicyClient.open(server);
    expect(await client.ask(rcptRequest())).toBe(UNAVAILABLE);
    client.close();
    await server.close();
  });

  it('rejects bad limits at start', async () => {
    await expect(
      startPolicyServer({
        listen: { host: '127.0.0.1', port: 0 },
        chain: testChain,
        log: memoryLogger(),
        limits: { maxConnections: 0 },
      }),
    ).rejects.toThrow(TypeError);
  });

  it('replaces a stale UNIX socket but not a live one', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'mxguard-policy-'));
    const path = join(dir, 'p.sock');
    // A socket file whose server is gone: a listening server closed without unlinking.
    const { execFileSync } = await import('node:child_process');
    execFileSync(process.execPath, [
      '-e',
      `require('net').createServer().listen(${JSON.stringify(path)}, () => process.exit(0))`,
    ]);
    const s1 = await startPolicyServer({ listen: { path }, chain: testChain, log: memoryLogger() });
    await expect(
      startPolicyServer({ listen: { path }, chain: testChain, log: memoryLogger() }),
    ).rejects.toThrow(/EADDRINUSE/);
    const c = await PolicyClient.open(s1);
    expect(await c.ask(rcptRequest())).toBe('DUNNO');
    c.close();
    await s1.close();
    await rm(dir, { recursive: true, force: true });
  });
});

describe('per-transaction cache (instance)', () => {
  it('enriches once per instance, awaits it before judging, and remembers recipients', async () => {
    const seen: Session[] = [];
    const enriched: string[] = [];
    const recorder = chain([
      {
        name: 'record',
        stage: 'connect',
        run(s) {
          seen.push(s);
          return { action: 'next' };
        },
      },
      byRecipient,
      {
        name: 'record-data',
        stage: 'data',
        run(s) {
          seen.push(s);
          return { action: 'next' };
        },
      },
    ]);
    const server = await startPolicyServer({
      listen: { host: '127.0.0.1', port: 0 },
      chain: recorder,
      log: memoryLogger(),
      clock: new ManualClock(0),
      enrich: async (s) => {
        enriched.push(s.flags?.postfixInstance as string);
        await new Promise((r) => setTimeout(r, 5));
        return {
          rdns: { names: ['ptr.example.net'], verified: 'ptr.example.net' },
          clientAddress: '10.9.9.9',
        };
      },
    });
    try {
      const c = await PolicyClient.open(server);
      const t1 = { instance: 'i1' };
      expect(await c.ask(rcptRequest({ ...t1, recipient: 'a@example.com', recipient_count: '0' }))).toBe(
        'DUNNO',
      );
      expect(
        await c.ask(rcptRequest({ ...t1, recipient: 'reject@example.com', recipient_count: '1' })),
      ).toMatch(/^550/);
      expect(await c.ask(rcptRequest({ ...t1, recipient: 'b@example.com', recipient_count: '1' }))).toBe(
        'DUNNO',
      );
      expect(
        await c.ask(rcptRequest({ ...t1, protocol_state: 'DATA', recipient: '', recipient_count: '2' })),
      ).toBe('DUNNO');
      expect(await c.ask(rcptRequest({ instance: 'i2', recipient: 'c@example.com' }))).toBe('DUNNO');
      c.close();
      expect(enriched).toEqual(['i1', 'i2']);
      // The enrichment reached the chain, but never over what Postfix said about the client.
      expect(
        seen.every((s) => s.rdns?.verified === 'ptr.example.net' && s.clientAddress === '192.0.2.10'),
      ).toBe(true);
      expect(seen.map((s) => s.recipients)).toEqual([
        undefined,
        ['a@example.com'],
        ['a@example.com'],
        ['a@example.com', 'b@example.com'],
        undefined,
      ]);
    } finally {
      await server.close();
    }
  });

  it('caches a new transaction only when it has a recipient to remember', async () => {
    // One transaction's room: refused transactions (a spam run's) must not push out the one that
    // has a recipient.
    const seen: (readonly string[] | undefined)[] = [];
    const recorder = chain([
      {
        name: 'record',
        stage: 'rcpt',
        run(s) {
          seen.push(s.recipients);
          return { action: 'next' };
        },
      },
      byRecipient,
    ]);
    const server = await startPolicyServer({
      listen: { host: '127.0.0.1', port: 0 },
      chain: recorder,
      log: memoryLogger(),
      limits: { maxInstances: 1 },
    });
    try {
      const c = await PolicyClient.open(server);
      const ask = (instance: string, recipient: string, count: number) =>
        c.ask(rcptRequest({ instance, recipient, recipient_count: String(count) }));
      expect(await ask('a', 'a@example.com', 0)).toBe('DUNNO');
      for (let i = 0; i < 5; i++) {
        expect(await ask(`spam${i}`, 'reject@example.com', 0)).toMatch(/^550/);
        expect(await ask(`slow${i}`, 'defer@example.com', 0)).toMatch(/^451/);
      }
      expect(await ask('a', 'b@example.com', 1)).toBe('DUNNO');
      c.close();
      expect(seen[0]).toBeUndefined();
      expect(seen.at(-1)).toEqual(['a@example.com']);
    } finally {
      await server.close();
    }
  });
});

describe('garbage from clients', () => {
  it('survives anything a client sends (fast-check, over a real socket)', async () => {
    const log = memoryLogger();
    const server = await startPolicyServer({
      listen: { host: '127.0.0.1', port: 0 },
      chain: testChain,
      log,
      limits: { maxLineLength: 256, maxAttributes: 30, idleTimeout: 2000 },
    });
    const a = server.address as { host: string; port: number };
    const send = (chunks: Uint8Array[]) =>
      new Promise<void>((resolve) => {
        const s = connect(a.port, a.host);
        s.on('error', () => {});
        s.on('data', () => {});
        s.on('close', () => resolve());
        s.once('connect', () => {
          for (const ch of chunks) s.write(ch);
          s.end();
        });
      });
    const line = fc.oneof(
      fc.constantFrom(
        'request=smtpd_access_policy',
        'protocol_state=RCPT',
        'recipient=reject@example.com',
        'client_address=192.0.2.1',
        '',
        'instance=x',
      ),
      fc.string({ maxLength: 300 }),
      fc.stringMatching(/^[a-z_]{1,10}=[\s\S]{0,40}$/),
    );
    const payload = fc.oneof(
      fc.array(fc.uint8Array({ maxLength: 600 }), { maxLength: 4 }),
      fc.array(line, { maxLength: 40 }).map((ls) => [Buffer.from(`${ls.join('\n')}\n\n`)]),
    );
    try {
      await fc.assert(
        fc.asyncProperty(payload, async (chunks) => {
          await send(chunks);
        }),
        { numRuns: 150, seed: 20240501 },
      );
      // Nothing a client sent was an internal error, and the server is still alive and right.
      expect(log.lines.filter((l) => l.level === 'error')).toEqual([]);
      expect(log.lines.some((l) => l.msg === 'malformed policy request: closing')).toBe(true);
      const c = await PolicyClient.open(server);
      expect(await c.ask(rcptRequest({ recipient: 'reject@example.com' }))).toBe(
        '550 5.7.1 go away (by-recipient)',
      );
      c.close();
    } finally {
      await server.close();
    }
  });
});
