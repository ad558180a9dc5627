/**
 * Onward delivery over LMTP on a UNIX socket (as to Dovecot's `lmtp` listener), with smtp-server in
 * LMTP mode as the real LMTP server: one reply per recipient after DATA. All accepted is our 250;
 * all refused for good is the client's refusal; a mix is a 451 (the client retries; nobody loses
 * the message).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chain } from '@mxguard/core';
import { type Gateway, startGateway } from '@mxguard/smtp';
import { SMTPServer } from 'smtp-server';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MemoryLogger, RawClient } from './helpers.js';

describe('relay to an LMTP server on a UNIX socket', () => {
  const dir = mkdtempSync(join(tmpdir(), 'mxguard-lmtp-'));
  const socket = join(dir, 'lmtp');
  const received: { rcpt: string[]; body: Buffer }[] = [];
  let lmtp: SMTPServer;
  let gw: Gateway;

  beforeAll(async () => {
    lmtp = new SMTPServer({
      lmtp: true,
      authOptional: true,
      disabledCommands: ['AUTH', 'STARTTLS'],
      disableReverseLookup: true,
      logger: false,
      onData(stream, session, callback) {
        const chunks: Buffer[] = [];
        stream.on('data', (c: Buffer) => chunks.push(c));
        stream.on('end', () => {
          const rcpt = session.envelope.rcptTo.map((r) => r.address);
          received.push({ rcpt, body: Buffer.concat(chunks) });
          // Per recipient, as an LMTP server answers: a full mailbox is refused for good.
          callback(
            null,
            rcpt.map((r) =>
              r.startsWith('full')
                ? Object.assign(new Error('5.2.2 Mailbox full'), { responseCode: 552 })
                : `2.0.0 <${r}> Saved`,
            ) as unknown as string,
          );
        });
      },
    });
    await new Promise<void>((resolve) => lmtp.listen(socket, () => resolve()));
    gw = await startGateway({ chain: chain([]), log: new MemoryLogger(), relay: `lmtp:${socket}`, port: 0 });
  });
  afterAll(async () => {
    await gw?.close();
    await new Promise<void>((resolve) => lmtp.close(() => resolve()));
    rmSync(dir, { recursive: true, force: true });
  });

  async function send(to: string[]): Promise<string> {
    const c = await RawClient.open(gw.port);
    await c.reply();
    await c.cmd('EHLO mail.example.net');
    await c.cmd('MAIL FROM:<a@example.net>');
    for (const r of to) expect(await c.cmd(`RCPT TO:<${r}>`)).toMatch(/^250 /);
    expect(await c.cmd('DATA')).toMatch(/^354 /);
    c.write('Subject: lmtp\r\n\r\n..a dotted line\r\nbody\r\n.\r\n');
    const reply = await c.line();
    c.close();
    return reply;
  }

  it('every recipient accepted: 250, and the LMTP server has our Received header and the message', async () => {
    expect(await send(['bob@example.com', 'carol@example.com'])).toMatch(/^250 2\.0\.0 /);
    const last = received.at(-1);
    expect(last?.rcpt).toEqual(['bob@example.com', 'carol@example.com']);
    const text = last?.body.toString('latin1') ?? '';
    expect(text).toMatch(
      /^Received: from mail\.example\.net \(unknown \[127\.0\.0\.1\]\)\r\n\tby mx\.example\.com \(mxguard\) with ESMTP id /,
    );
    expect(text.endsWith('Subject: lmtp\r\n\r\n.a dotted line\r\nbody\r\n')).toBe(true);
  });

  it('every recipient refused for good: the client hears the LMTP server’s refusal', async () => {
    expect(await send(['full@example.com'])).toBe('552 5.2.2 Mailbox full');
  });

  it('some accepted and some refused: 451, so the client retries rather than loses the refused one', async () => {
    expect(await send(['bob@example.com', 'full@example.com'])).toBe(
      '451 4.3.0 Delivered to 1 of 2 recipients downstream; try again later',
    );
  });
});
