import { readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { Check, Session } from '@mxguard/core';
import { chain, next, reject, reply, weigh } from '@mxguard/core';
import { type Gateway, type GatewayOptions, readSpoolFile } from '@mxguard/smtp';
import nodemailer from 'nodemailer';
import { afterAll, describe, expect, it, vi } from 'vitest';
import { heloDot, pipelining, recipientBlock, senderBlock } from './checks.js';
import { type MemoryLogger, RawClient, testGateway } from './helpers.js';

const cleanups: (() => Promise<void>)[] = [];
afterAll(async () => {
  for (const c of cleanups.reverse()) await c();
});

/** A gateway on a free loopback port with its own spool folder, stopped after the file. */
async function gateway(
  overrides: Partial<GatewayOptions> & Pick<GatewayOptions, 'chain'>,
): Promise<{ gw: Gateway; log: MemoryLogger; spoolDir: string }> {
  return testGateway(overrides, cleanups);
}

/** A check that records the sessions it sees. */
function recorder(seen: Session[]): Check {
  return {
    name: 'recorder',
    stage: 'rcpt',
    run(s) {
      seen.push(s);
      return next();
    },
  };
}

function gate(): { promise: Promise<void>; open: () => void } {
  let open = () => {};
  const promise = new Promise<void>((r) => {
    open = r;
  });
  return { promise, open };
}

describe('early talkers', () => {
  it('are held until the greeting, flagged, and refused by the chain at RCPT', async () => {
    const g = gate();
    const flagged: string[] = [];
    const { gw, log } = await gateway({
      chain: chain([pipelining]),
      // The greeting waits for the connect evaluation, which waits for enrich: the test decides
      // when the greeting goes out, so no timing decides whether the client talked early.
      evaluateConnect: true,
      enrich: async () => {
        await g.promise;
        return {};
      },
      onFlag: (s, f) => flagged.push(`${s.clientAddress}:${f}`),
    });
    const c = await RawClient.open(gw.port);
    c.write('EHLO early.example.net\r\n');
    await vi.waitFor(() => expect(log.events('finding').map((f) => f.flag)).toContain('earlyTalker'));
    expect(c.received).toEqual([]);
    g.open();
    expect(await c.line()).toBe('220 mx.example.com ESMTP');
    expect(await c.line()).toMatch(/^250 /);
    expect(await c.cmd('MAIL FROM:<a@sender.test>')).toBe('250 2.1.0 Accepted');
    expect(await c.cmd('RCPT TO:<user@example.com>')).toBe(
      '550 5.5.1 Protocol error: talked before the greeting (pipelining)',
    );
    expect(flagged).toEqual(['127.0.0.1:earlyTalker']);
    c.close();
  });

  it('a polite client is not flagged', async () => {
    const { gw, log } = await gateway({ chain: chain([pipelining]) });
    const c = await RawClient.open(gw.port);
    expect(await c.line()).toBe('220 mx.example.com ESMTP');
    await c.cmd('EHLO polite.example.net');
    await c.cmd('MAIL FROM:<a@sender.test>');
    expect(await c.cmd('RCPT TO:<user@example.com>')).toBe('250 2.1.5 Accepted');
    expect(log.events('finding')).toEqual([]);
    c.close();
  });

  it("in refuse mode get smtp-server's 421, logged as a decision", async () => {
    const g = gate();
    const { gw, log } = await gateway({
      chain: chain([pipelining]),
      earlyTalkers: 'refuse',
      evaluateConnect: true,
      enrich: async () => {
        await g.promise;
        return {};
      },
    });
    const c = await RawClient.open(gw.port);
    c.write('EHLO early.example.net\r\n');
    expect(await c.line()).toBe('421 mx.example.com You talk too soon');
    g.open();
    const d = log.decisions().pop();
    expect(d).toMatchObject({
      stage: 'connect',
      client: '127.0.0.1',
      action: 'defer',
      code: 421,
      check: 'early-talker',
    });
    c.close();
  });
});

describe('pipelining without PIPELINING (RFC 2920)', () => {
  it('is not offered, and a client that pipelines anyway is flagged and refused', async () => {
    const { gw, log } = await gateway({ chain: chain([pipelining]), offerPipelining: false });
    const c = await RawClient.open(gw.port);
    await c.line();
    c.write('EHLO rude.example.net\r\nMAIL FROM:<a@sender.test>\r\nRCPT TO:<user@example.com>\r\n');
    const ehlo = await c.reply();
    expect(ehlo.map((l) => l.slice(4))).not.toContain('PIPELINING');
    expect(await c.line()).toBe('250 2.1.0 Accepted');
    expect(await c.line()).toBe('550 5.5.1 Protocol error: improper command pipelining (pipelining)');
    expect(log.events('finding').map((f) => f.flag)).toEqual(['unauthorizedPipelining']);
    c.close();
  });

  it('a client that waits for each reply passes, its message body in one write included', async () => {
    const { gw, log } = await gateway({ chain: chain([pipelining]), offerPipelining: false });
    const transport = nodemailer.createTransport({
      host: '127.0.0.1',
      port: gw.port,
      ignoreTLS: true,
      name: 'c.example.net',
    });
    const body = `Subject: many lines\r\n\r\n${'line\r\n'.repeat(500)}`;
    const info = await transport.sendMail({
      envelope: { from: 'a@sender.test', to: ['user@example.com'] },
      raw: body,
    });
    transport.close();
    expect(info.response).toMatch(/^250 2\.0\.0 /);
    expect(log.events('finding')).toEqual([]);
  });
});

describe('enrich', () => {
  it('results reach the checks', async () => {
    const seen: Session[] = [];
    const { gw } = await gateway({
      chain: chain([recorder(seen)]),
      enrich: async (s) => ({ rdns: { names: [`host-${s.clientAddress}.example.net`], verified: null } }),
    });
    const c = await RawClient.open(gw.port);
    await c.line();
    await c.cmd('EHLO c.example.net');
    await c.cmd('MAIL FROM:<>');
    expect(await c.cmd('RCPT TO:<user@example.com>')).toBe('250 2.1.5 Accepted');
    c.close();
    expect(seen[0]).toMatchObject({
      clientAddress: '127.0.0.1',
      stage: 'rcpt',
      helo: 'c.example.net',
      mailFrom: '',
      rcptTo: 'user@example.com',
      recipients: [],
      tls: false,
      rdns: { names: ['host-127.0.0.1.example.net'], verified: null },
    });
  });

  it('that throws becomes a temporary unknown, never a crash', async () => {
    const seen: Session[] = [];
    const { gw, log } = await gateway({
      chain: chain([recorder(seen)]),
      enrich: () => {
        throw new Error('resolver exploded');
      },
    });
    const c = await RawClient.open(gw.port);
    await c.line();
    await c.cmd('EHLO c.example.net');
    await c.cmd('MAIL FROM:<a@sender.test>');
    expect(await c.cmd('RCPT TO:<user@example.com>')).toBe('250 2.1.5 Accepted');
    c.close();
    expect(seen[0]?.rdns).toEqual({ names: [], error: 'temporary' });
    expect(seen[0]?.flags?.enrichFailed).toBe(true);
    expect(log.events('enrich-failed')[0]).toMatchObject({ err: 'resolver exploded' });
  });

  it('that hangs is given up after its timeout', async () => {
    const seen: Session[] = [];
    const { gw, log } = await gateway({
      chain: chain([recorder(seen)]),
      enrichTimeoutMs: 50,
      enrich: () => new Promise(() => {}),
    });
    const c = await RawClient.open(gw.port);
    await c.line();
    await c.cmd('EHLO c.example.net');
    await c.cmd('MAIL FROM:<a@sender.test>');
    expect(await c.cmd('RCPT TO:<user@example.com>')).toBe('250 2.1.5 Accepted');
    c.close();
    expect(seen[0]?.rdns).toEqual({ names: [], error: 'temporary' });
    expect(log.events('enrich-failed')).toHaveLength(1);
  });
});

describe('without delay-reject', () => {
  it('judges HELO checks at MAIL (smtp-server has no HELO hook) and MAIL checks at MAIL', async () => {
    const { gw, log } = await gateway({
      chain: chain([heloDot, senderBlock, recipientBlock], { delayReject: false }),
    });
    const c = await RawClient.open(gw.port);
    await c.line();
    await c.cmd('EHLO nodot');
    expect(await c.cmd('MAIL FROM:<a@sender.test>')).toBe(
      '504 5.5.2 <nodot>: Helo command rejected: need fully-qualified hostname (helo-dot)',
    );
    await c.cmd('EHLO c.example.net');
    expect(await c.cmd('MAIL FROM:<x@bad.test>')).toBe(
      '550 5.7.1 <x@bad.test>: Sender address rejected: Access denied (sender-block)',
    );
    expect(await c.cmd('MAIL FROM:<a@sender.test>')).toBe('250 2.1.0 Accepted');
    expect(await c.cmd('RCPT TO:<blocked@example.com>')).toMatch(/^554 5\.7\.1 /);
    c.close();
    expect(log.decisions().map((d) => [d.stage, d.action, d.check ?? null])).toEqual([
      ['helo', 'reject', 'helo-dot'],
      ['helo', 'next', null],
      ['mail', 'reject', 'sender-block'],
      ['helo', 'next', null],
      ['mail', 'next', null],
      ['rcpt', 'reject', 'recipient-block'],
    ]);
  });

  it('refuses at connect when asked to evaluate there', async () => {
    const noLoopback: Check = {
      name: 'no-loopback',
      stage: 'connect',
      run: (s) =>
        s.clientAddress === '127.0.0.1' ? reject(reply(554, '5.7.1', 'Go away'), 'loopback') : next(),
    };
    const { gw } = await gateway({
      chain: chain([noLoopback], { delayReject: false }),
      evaluateConnect: true,
    });
    const c = await RawClient.open(gw.port);
    expect(await c.line()).toBe('554 5.7.1 Go away (no-loopback)');
    c.close();
  });
});

describe('links that read headers', () => {
  /** Points at RCPT (4 for a sender from points.test), a header check (1 for X-Bad), weigh at DATA. */
  function headerChain(seen: (string | undefined)[]) {
    const rcptPoints: Check = {
      name: 'rcpt-points',
      stage: 'rcpt',
      run: (s) =>
        next('', s.mailFrom?.endsWith('@points.test') ? [{ check: 'rcpt-points', tag: 'p', score: 4 }] : []),
    };
    const headerPoints: Check = {
      name: 'header-points',
      stage: 'data',
      readsHeaders: true,
      maxScore: 1,
      run(s) {
        seen.push(s.headers);
        return next(
          '',
          /^X-Bad:/m.test(s.headers ?? '') ? [{ check: 'header-points', tag: 'x', score: 1 }] : [],
        );
      },
    };
    return chain([rcptPoints, headerPoints, weigh({ checks: [], reject: 5, stage: 'data' })]);
  }

  async function send(port: number, from: string, message: string, chunks = 1): Promise<string> {
    const c = await RawClient.open(port);
    await c.line();
    await c.cmd('EHLO c.example.net');
    expect(await c.cmd(`MAIL FROM:<${from}>`)).toMatch(/^250 /);
    expect(await c.cmd('RCPT TO:<user@example.com>')).toMatch(/^250 /);
    expect(await c.cmd('DATA')).toMatch(/^354 /);
    const wire = Buffer.from(`${message}.\r\n`, 'latin1');
    const step = Math.ceil(wire.length / chunks);
    for (let i = 0; i < wire.length; i += step) c.write(wire.subarray(i, i + step));
    const done = await c.line();
    c.close();
    return done;
  }

  it('see the header block at DATA, and a data-stage weigh adds their points to the RCPT ones', async () => {
    const seen: (string | undefined)[] = [];
    const { gw, spoolDir, log } = await gateway({ chain: headerChain(seen) });
    const head = 'Received: from a (a [192.0.2.1])\r\n\tby b; Mon, 1 Jan 2024 00:00:00 +0000\r\nX-Bad: 1\r\n';
    const body = `${'y'.repeat(70)}\r\n`.repeat(3000);
    // Below the threshold on either side alone: 4 points at RCPT, 1 in the headers.
    const clean = await send(gw.port, 'a@points.test', `Subject: ok\r\n\r\n${body}`, 7);
    expect(clean).toMatch(/^250 2\.0\.0 Ok: queued as /);
    const other = await send(gw.port, 'a@sender.test', `${head}\r\n${body}`, 5);
    expect(other).toMatch(/^250 /);
    expect(seen).toEqual(['Subject: ok\r\n', head]);
    // The header block went to the spool whole, head and body, byte for byte.
    const id = other.split(' ').pop() ?? '';
    expect((await readSpoolFile(join(spoolDir, `${id}.msg`))).message.toString('latin1')).toBe(
      `${head}\r\n${body}`,
    );
    // Together they reach 5: refused at the end of DATA with the weigh's reply, nothing spooled.
    const before = (await readdir(spoolDir)).length;
    expect(await send(gw.port, 'a@points.test', `${head}\r\n${body}`, 3)).toMatch(
      /^554 5\.7\.1 Service unavailable; client scored too high/,
    );
    expect((await readdir(spoolDir)).length).toBe(before);
    const last = log.decisions().at(-1);
    expect(last).toMatchObject({ stage: 'data', action: 'reject', check: 'weigh' });
    expect(String(last?.reason)).toMatch(/^score 5 .*rcpt-points:p=4.*header-points:x=1/);
  });

  it('judge a header block longer than maxHeaderBytes as far as it was read, and spool it all', async () => {
    const seen: (string | undefined)[] = [];
    const { gw, spoolDir } = await gateway({ chain: headerChain(seen), maxHeaderBytes: 1024 });
    const long = `${'X-Long: '.padEnd(900, 'z')}\r\n`.repeat(4);
    const done = await send(gw.port, 'a@sender.test', `${long}\r\nbody\r\n`);
    expect(done).toMatch(/^250 /);
    expect(seen[0]).toBe(long.slice(0, 1024));
    const id = done.split(' ').pop() ?? '';
    expect((await readSpoolFile(join(spoolDir, `${id}.msg`))).message.toString('latin1')).toBe(
      `${long}\r\nbody\r\n`,
    );
  });
});

describe('the gateway’s limits', () => {
  async function sendData(port: number, body: string, size?: number): Promise<string[]> {
    const c = await RawClient.open(port);
    await c.line();
    await c.cmd('EHLO c.example.net');
    const out = [await c.cmd(`MAIL FROM:<a@sender.test>${size ? ` SIZE=${size}` : ''}`)];
    if (!out[0]?.startsWith('250')) {
      c.close();
      return out;
    }
    out.push(await c.cmd('RCPT TO:<user@example.com>'));
    out.push(await c.cmd('DATA'));
    c.write(`${body}.\r\n`);
    out.push(await c.line());
    c.close();
    return out;
  }

  it('refuses a message over the size limit with 552 5.3.4 and keeps no file of it', async () => {
    const { gw, spoolDir } = await gateway({ chain: chain([]), maxMessageBytes: 1000 });
    const out = await sendData(gw.port, `Subject: big\r\n\r\n${'x'.repeat(78)}\r\n`.repeat(60));
    expect(out[3]).toBe('552 5.3.4 Message size exceeds fixed maximum message size');
    expect(await readdir(spoolDir)).toEqual([]);
    const declared = await sendData(gw.port, '', 5000);
    expect(declared[0]).toMatch(/^552 5\.3\.4 /);
  });

  it('answers 451 4.3.0 when the spool cannot be written', async () => {
    const { gw, spoolDir } = await gateway({ chain: chain([]) });
    await rm(spoolDir, { recursive: true });
    const out = await sendData(gw.port, 'Subject: lost?\r\n\r\nno\r\n');
    expect(out[3]).toBe('451 4.3.0 Temporary local problem, try again later');
  });

  it('forgets a connection when it closes', async () => {
    const { gw } = await gateway({ chain: chain([]) });
    const c = await RawClient.open(gw.port);
    await c.line();
    expect(gw.guard.size).toBe(1);
    await c.cmd('QUIT');
    c.close();
    await vi.waitFor(() => expect(gw.guard.size).toBe(0));
  });
});
