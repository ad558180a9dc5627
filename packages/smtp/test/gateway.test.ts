import { execFile } from 'node:child_process';
import { readdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { chain, ManualClock } from '@mxguard/core';
import { type Gateway, readSpoolFile, startGateway } from '@mxguard/smtp';
import nodemailer from 'nodemailer';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { heloDot, miniGreylist, pipelining, recipientBlock, senderBlock } from './checks.js';
import { counterRandom, MemoryLogger, RawClient, tempDir } from './helpers.js';

const run = promisify(execFile);

/** A message with 8-bit bytes, a line starting with a dot and one that is only a dot. */
function trickyMessage(): Buffer {
  return Buffer.concat([
    Buffer.from(
      'From: a@sender.test\r\nTo: user@example.com\r\nSubject: spool test\r\nContent-Type: text/plain; charset=iso-8859-1\r\nContent-Transfer-Encoding: 8bit\r\n\r\n',
      'latin1',
    ),
    Buffer.from([0x63, 0x61, 0x66, 0xe9, 0x20, 0xa9, 0xff, 0x80, 0x0d, 0x0a]),
    Buffer.from('.leading dot\r\n.\r\n..two dots\r\nend. \r\n', 'latin1'),
  ]);
}

async function spooled(dir: string): Promise<string[]> {
  return (await readdir(dir)).filter((f) => f.endsWith('.msg')).sort();
}

describe('startGateway logTrace', () => {
  it("'full' logs every step of the trace; 'said' the ones that said something; a misspelling is refused", async () => {
    const spool = await tempDir('mxguard-spool-');
    const full = new MemoryLogger();
    const said = new MemoryLogger();
    const gateways: Gateway[] = [];
    try {
      for (const [log, logTrace] of [
        [full, 'full'],
        [said, 'said'],
      ] as const) {
        gateways.push(
          await startGateway({
            chain: chain([heloDot, senderBlock, recipientBlock, miniGreylist(), pipelining]),
            log,
            spoolDir: spool.dir,
            port: 0,
            logTrace,
          }),
        );
      }
      for (const gw of gateways) {
        const c = await RawClient.open(gw.port);
        await c.line();
        await c.cmd('EHLO client.example.net');
        await c.cmd('MAIL FROM:<a@sender.test>');
        expect(await c.cmd('RCPT TO:<blocked@example.com>')).toMatch(/^554 5\.7\.1 /);
        c.close();
      }
      const rcpt = (log: MemoryLogger) => log.decisions().find((d) => d.stage === 'rcpt');
      const checks = (log: MemoryLogger) =>
        ((rcpt(log)?.trace ?? []) as { check: string }[]).map((s) => s.check);
      expect(rcpt(full)).toMatchObject({ check: 'recipient-block', steps: 3 });
      expect(checks(full)).toEqual(['helo-dot', 'sender-block', 'recipient-block']);
      expect(rcpt(said)).toMatchObject({ check: 'recipient-block', steps: 3 });
      expect(checks(said)).toEqual(['recipient-block']);
      await expect(
        startGateway({
          chain: chain([heloDot]),
          log: said,
          spoolDir: spool.dir,
          port: 0,
          logTrace: 'all' as 'full',
        }),
      ).rejects.toThrow(/logTrace must be 'said' or 'full', got "all"/);
    } finally {
      for (const gw of gateways) await gw.close();
      await spool.remove();
    }
  });
});

describe('startGateway with a delay-reject chain', () => {
  const clock = new ManualClock(1_700_000_000_000);
  const log = new MemoryLogger();
  let gw: Gateway;
  let spool: { dir: string; remove: () => Promise<void> };

  beforeAll(async () => {
    spool = await tempDir('mxguard-spool-');
    gw = await startGateway({
      chain: chain([heloDot, senderBlock, recipientBlock, miniGreylist(), pipelining], { clock }),
      log,
      clock,
      random: counterRandom(),
      spoolDir: spool.dir,
      port: 0,
      hostname: 'mx.example.com',
    });
  });
  afterAll(async () => {
    await gw.close();
    await spool.remove();
  });

  it('greets with our host name and advertises what it does', async () => {
    const c = await RawClient.open(gw.port);
    expect(await c.line()).toBe('220 mx.example.com ESMTP');
    c.write('EHLO client.example.net\r\n');
    const lines = (await c.reply()).map((l) => l.slice(4));
    expect(lines).toContain('PIPELINING');
    expect(lines).toContain('ENHANCEDSTATUSCODES');
    expect(lines).toContain('8BITMIME');
    expect(lines).toContain(`SIZE ${25 * 1024 * 1024}`);
    expect(lines.some((l) => l.startsWith('AUTH'))).toBe(false);
    expect(lines).not.toContain('STARTTLS');
    expect(await c.cmd('QUIT')).toMatch(/^221 /);
    c.close();
  });

  it('puts the verdict’s own enhanced code on the wire (HELO check decided at RCPT)', async () => {
    const c = await RawClient.open(gw.port);
    await c.line();
    expect(await c.cmd('EHLO localhost')).toMatch(/^250 /);
    expect(await c.cmd('MAIL FROM:<a@sender.test>')).toBe('250 2.1.0 Accepted');
    expect(await c.cmd('RCPT TO:<user@example.com>')).toBe(
      '504 5.5.2 <localhost>: Helo command rejected: need fully-qualified hostname (helo-dot)',
    );
    c.close();
  });

  it('rejects a sender (MAIL check, decided at RCPT) and a single recipient, not the others', async () => {
    const c = await RawClient.open(gw.port);
    await c.line();
    await c.cmd('EHLO client.example.net');
    expect(await c.cmd('MAIL FROM:<x@bad.test>')).toBe('250 2.1.0 Accepted');
    expect(await c.cmd('RCPT TO:<user@example.com>')).toBe(
      '550 5.7.1 <x@bad.test>: Sender address rejected: Access denied (sender-block)',
    );
    expect(await c.cmd('RSET')).toMatch(/^250 /);
    expect(await c.cmd('MAIL FROM:<a@sender.test>')).toBe('250 2.1.0 Accepted');
    expect(await c.cmd('RCPT TO:<blocked@example.com>')).toBe(
      '554 5.7.1 <blocked@example.com>: Recipient address rejected: Access denied (recipient-block)',
    );
    expect(await c.cmd('RCPT TO:<user@example.com>')).toBe('250 2.1.5 Accepted');
    expect(await c.cmd('RSET')).toMatch(/^250 /);
    c.close();
  });

  it('relays for no one, loopback included', async () => {
    const c = await RawClient.open(gw.port);
    await c.line();
    await c.cmd('EHLO client.example.net');
    await c.cmd('MAIL FROM:<a@sender.test>');
    expect(await c.cmd('RCPT TO:<someone@elsewhere.test>')).toBe(
      '554 5.7.1 <someone@elsewhere.test>: Relay access denied',
    );
    c.close();
  });

  it('greylists, then accepts the retry once the clock has moved', async () => {
    const attempt = async () => {
      const c = await RawClient.open(gw.port);
      await c.line();
      await c.cmd('EHLO client.example.net');
      await c.cmd('MAIL FROM:<a@grey.test>');
      const r = await c.cmd('RCPT TO:<user@example.com>');
      c.close();
      return r;
    };
    expect(await attempt()).toBe('450 4.7.1 Greylisted, try again in 300 seconds (mini-greylist)');
    clock.advance(60_000);
    expect(await attempt()).toBe('450 4.7.1 Greylisted, try again in 300 seconds (mini-greylist)');
    clock.advance(300_000);
    expect(await attempt()).toBe('250 2.1.5 Accepted');
  });

  it('spools a message whole, answers 250 with its id, and logs one line per decision', async () => {
    const before = log.decisions().length;
    const c = await RawClient.open(gw.port);
    await c.line();
    await c.cmd('EHLO client.example.net');
    await c.cmd('MAIL FROM:<a@sender.test>');
    await c.cmd('RCPT TO:<user@example.com>');
    await c.cmd('RCPT TO:<other@example.com>');
    expect(await c.cmd('DATA')).toMatch(/^354 /);
    const msg = trickyMessage();
    // Dot-stuffing as RFC 5321 section 4.5.2 asks of a client.
    const stuffed = msg.toString('latin1').replace(/^\./gm, '..');
    c.write(Buffer.from(`${stuffed}.\r\n`, 'latin1'));
    const done = await c.line();
    expect(done).toMatch(/^250 2\.0\.0 Ok: queued as \d{13}-[0-9a-f]{16}$/);
    const id = done.split(' ').pop() ?? '';
    const { envelope, message } = await readSpoolFile(join(spool.dir, `${id}.msg`));
    expect(message.equals(msg)).toBe(true);
    // Our Received header travels in the envelope, for the agent that delivers the message; two
    // recipients, so no `for` clause.
    expect(envelope.received).toMatch(
      /^Received: from client\.example\.net \(unknown \[127\.0\.0\.1\]\)\r\n\tby mx\.example\.com \(mxguard\) with ESMTP id \S+; \w{3}, \d\d \w{3} \d{4} \d\d:\d\d:\d\d \+0000\r\n$/,
    );
    expect(envelope).toMatchObject({
      version: 1,
      id,
      receivedBy: 'mx.example.com',
      mailFrom: 'a@sender.test',
      rcptTo: ['user@example.com', 'other@example.com'],
      client: { address: '127.0.0.1', helo: 'client.example.net' },
      tls: false,
    });
    expect(envelope.receivedAt).toBe(new Date(clock.now()).toISOString());
    expect(await c.cmd('QUIT')).toMatch(/^221 /);
    c.close();
    const lines = log.decisions().slice(before);
    expect(lines.map((l) => [l.stage, l.to ?? null, l.action])).toEqual([
      ['mail', null, 'next'],
      ['rcpt', 'user@example.com', 'next'],
      ['rcpt', 'other@example.com', 'next'],
      ['data', null, 'next'],
    ]);
    for (const l of lines) {
      expect(l).toMatchObject({ client: '127.0.0.1', helo: 'client.example.net', from: 'a@sender.test' });
      expect(Array.isArray(l.trace)).toBe(true);
    }
    // By default the line carries the steps that said something: here none of the five links.
    expect(lines[1]).toMatchObject({ steps: 5, trace: [] });
    // No temporary file is left behind.
    expect((await readdir(spool.dir)).filter((f) => f.startsWith('.tmp-'))).toEqual([]);
  });

  it('logs a rejection with its check, codes and trace', async () => {
    const c = await RawClient.open(gw.port);
    await c.line();
    await c.cmd('EHLO client.example.net');
    await c.cmd('MAIL FROM:<a@sender.test>');
    await c.cmd('RCPT TO:<blocked@example.com>');
    c.close();
    const l = log
      .decisions()
      .filter((d) => d.to === 'blocked@example.com')
      .pop();
    expect(l).toMatchObject({
      event: 'decision',
      stage: 'rcpt',
      client: '127.0.0.1',
      helo: 'client.example.net',
      from: 'a@sender.test',
      to: 'blocked@example.com',
      action: 'reject',
      code: 554,
      enhanced: '5.7.1',
      check: 'recipient-block',
    });
  });

  it('accepts from swaks and spools byte for byte', async () => {
    const file = join(spool.dir, 'swaks-input.eml');
    const msg = trickyMessage();
    // swaks ends the data with CRLF.CRLF after the file's content, so the file leaves out the
    // message's final CRLF (swaks would add a blank line otherwise).
    await writeFile(file, msg.subarray(0, msg.length - 2));
    const before = await spooled(spool.dir);
    const { stdout } = await run('/usr/bin/swaks', [
      '--server',
      `127.0.0.1:${gw.port}`,
      '--helo',
      'client.example.net',
      '--from',
      'a@sender.test',
      '--to',
      'user@example.com',
      '--data',
      file,
    ]);
    await rm(file);
    expect(stdout).toMatch(/<- {2}250 2\.0\.0 Ok: queued as /);
    const added = (await spooled(spool.dir)).filter((f) => !before.includes(f));
    expect(added).toHaveLength(1);
    const { message } = await readSpoolFile(join(spool.dir, added[0] ?? ''));
    expect(message.toString('latin1')).toBe(msg.toString('latin1'));
  });

  it('shows swaks a HELO rejection with its enhanced code', async () => {
    const r = await run('/usr/bin/swaks', [
      '--server',
      `127.0.0.1:${gw.port}`,
      '--helo',
      'nodot',
      '--from',
      'a@sender.test',
      '--to',
      'user@example.com',
    ]).catch((e: { stdout: string; code: number }) => e);
    expect(r.stdout).toContain(
      '<** 504 5.5.2 <nodot>: Helo command rejected: need fully-qualified hostname (helo-dot)',
    );
  });

  it('accepts from nodemailer and spools byte for byte', async () => {
    const transport = nodemailer.createTransport({
      host: '127.0.0.1',
      port: gw.port,
      secure: false,
      ignoreTLS: true,
      name: 'client.example.net',
    });
    const msg = trickyMessage();
    const before = await spooled(spool.dir);
    const info = await transport.sendMail({
      envelope: { from: 'a@sender.test', to: ['user@example.com'] },
      raw: msg,
    });
    transport.close();
    expect(info.response).toMatch(/^250 2\.0\.0 Ok: queued as /);
    const added = (await spooled(spool.dir)).filter((f) => !before.includes(f));
    expect(added).toHaveLength(1);
    const { message, envelope } = await readSpoolFile(join(spool.dir, added[0] ?? ''));
    expect(message.equals(msg)).toBe(true);
    expect(envelope.mailFrom).toBe('a@sender.test');
  });

  it('shows nodemailer a recipient rejection and a greylisting as their codes', async () => {
    const transport = nodemailer.createTransport({
      host: '127.0.0.1',
      port: gw.port,
      ignoreTLS: true,
      name: 'c.example.net',
    });
    const err = await transport
      .sendMail({
        envelope: { from: 'a@sender.test', to: ['blocked@example.com'] },
        raw: 'Subject: x\r\n\r\nx\r\n',
      })
      .catch((e: { responseCode: number; response: string }) => e);
    expect(err).toMatchObject({ responseCode: 554 });
    expect((err as { response: string }).response).toMatch(/^554 5\.7\.1 /);
    const grey = await transport
      .sendMail({
        envelope: { from: 'n@grey.test', to: ['user@example.com'] },
        raw: 'Subject: x\r\n\r\nx\r\n',
      })
      .catch((e: { responseCode: number; response: string }) => e);
    expect(grey).toMatchObject({ responseCode: 450 });
    clock.advance(301_000);
    const ok = await transport.sendMail({
      envelope: { from: 'n@grey.test', to: ['user@example.com'] },
      raw: 'Subject: x\r\n\r\nx\r\n',
    });
    expect(ok.response).toMatch(/^250 2\.0\.0 /);
    transport.close();
  });
});
