/**
 * `startGateway({ relay })` in front of a real Postfix 3.7 on loopback: accepted mail reaches
 * Postfix's mailbox with our Received header and otherwise unchanged, an unknown user is refused at
 * RCPT with Postfix's own words, a Postfix refusal at end of DATA reaches the client at SMTP time,
 * and with Postfix stopped mid-run every message the client saw acknowledged is in Postfix's
 * mailbox or queue while every other one got a 4xx.
 */
import { readFile } from 'node:fs/promises';
import { chain } from '@mxguard/core';
import { downstreamReply, type Gateway, parseRelayTarget, receivedHeader, startGateway } from '@mxguard/smtp';
import nodemailer from 'nodemailer';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort } from '../../../testing/net.js';
import {
  maildirMessages,
  type PostfixInstance,
  postfixAvailable,
  startPostfix,
} from '../../../testing/postfix-instance.js';
import { selfSigned } from '../../../testing/tls.js';
import { until } from '../../../testing/wait.js';
import { MemoryLogger, RawClient } from './helpers.js';

describe('parseRelayTarget and downstreamReply', () => {
  it('reads smtp, lmtp and UNIX-socket targets and refuses the rest with the reason', () => {
    expect(parseRelayTarget('smtp://127.0.0.1:10025')).toEqual({
      protocol: 'smtp',
      host: '127.0.0.1',
      port: 10025,
    });
    expect(parseRelayTarget('lmtp://[::1]:24')).toEqual({ protocol: 'lmtp', host: '::1', port: 24 });
    expect(parseRelayTarget('lmtp:/run/dovecot/lmtp')).toEqual({
      protocol: 'lmtp',
      path: '/run/dovecot/lmtp',
    });
    expect(parseRelayTarget('lmtp:unix:/run/dovecot/lmtp')).toEqual({
      protocol: 'lmtp',
      path: '/run/dovecot/lmtp',
    });
    expect(() => parseRelayTarget('smtp:/tmp/sock')).toThrow(/UNIX socket/);
    expect(() => parseRelayTarget('http://x:1')).toThrow(/expected smtp/);
    expect(() => parseRelayTarget('smtp://host')).toThrow(/HOST:PORT/);
    expect(() => parseRelayTarget('smtp://host:70000')).toThrow(/out of range/);
  });

  it('passes a 5xx on as the refusal, a 4xx as a deferral, and a failure as 451 (never 5xx)', () => {
    expect(
      downstreamReply({ responseCode: 550, response: '550 5.1.1 <x@example.com>: User unknown' }),
    ).toEqual({ code: 550, enhanced: '5.1.1', text: '<x@example.com>: User unknown' });
    expect(downstreamReply({ responseCode: 452, response: '452 4.3.1 Insufficient system storage' })).toEqual(
      {
        code: 452,
        enhanced: '4.3.1',
        text: 'Insufficient system storage',
      },
    );
    expect(downstreamReply(new Error('connect ECONNREFUSED')).code).toBe(451);
    expect(downstreamReply({ code: 'ETIMEDOUT' }).code).toBe(451);
  });

  it('writes a Postfix-shaped Received header, with one recipient in the for clause', () => {
    const h = receivedHeader(
      {
        clientAddress: '192.0.2.7',
        helo: 'mail.example.net',
        rdns: { names: ['mail.example.net'], verified: 'mail.example.net' },
        recipients: ['bob@example.com'],
        stage: 'data',
      },
      { hostname: 'mx.example.com', id: 'abc123', time: Date.UTC(2026, 11, 1, 15, 19, 18) },
    );
    expect(h).toBe(
      'Received: from mail.example.net (mail.example.net [192.0.2.7])\r\n' +
        '\tby mx.example.com (mxguard) with ESMTP id abc123\r\n' +
        '\tfor <bob@example.com>; Tue, 01 Dec 2026 15:19:18 +0000\r\n',
    );
    const v6 = receivedHeader(
      { clientAddress: '2001:db8::1', helo: 'x (y)\r\nBcc: z', recipients: ['a@b', 'c@d'], stage: 'data' },
      { hostname: 'mx.example.com', time: 0, tls: {} },
    );
    expect(v6).toBe(
      'Received: from x??y???Bcc:?z (unknown [IPv6:2001:db8::1])\r\n' +
        '\tby mx.example.com (mxguard) with ESMTPS; Thu, 01 Jan 1970 00:00:00 +0000\r\n',
    );
  });
});

/** A message with 8-bit bytes, a line starting with a dot and one that is only a dot. */
function trickyMessage(id: string): Buffer {
  return Buffer.concat([
    Buffer.from(
      `From: a@sender.example.net\r\nTo: bob@example.com\r\nMessage-ID: <${id}@sender.example.net>\r\nDate: Tue, 01 Dec 2026 15:00:00 +0000\r\nSubject: relay test\r\nContent-Type: text/plain; charset=iso-8859-1\r\nContent-Transfer-Encoding: 8bit\r\n\r\n`,
      'latin1',
    ),
    Buffer.from([0x63, 0x61, 0x66, 0xe9, 0x20, 0xa9, 0xff, 0x80, 0x0d, 0x0a]),
    Buffer.from('.leading dot\r\n.\r\n..two dots\r\nend. \r\n', 'latin1'),
  ]);
}

/** Sends one message over a raw connection; returns the reply to each command. */
async function transaction(
  port: number,
  from: string,
  to: string[],
  message: Buffer,
): Promise<{ rcpt: string[]; data: string | undefined }> {
  const c = await RawClient.open(port);
  await c.reply();
  c.write('EHLO client.example.net\r\n');
  await c.reply();
  c.write(`MAIL FROM:<${from}>\r\n`);
  await c.reply();
  const rcpt: string[] = [];
  for (const r of to) {
    c.write(`RCPT TO:<${r}>\r\n`);
    rcpt.push((await c.reply()).join('\n'));
  }
  let data: string | undefined;
  if (rcpt.some((r) => r.startsWith('250'))) {
    c.write('DATA\r\n');
    await c.reply();
    // Dot-stuffing (RFC 5321 section 4.5.2), then the end of data.
    const stuffed = message.toString('latin1').replace(/^\./gm, '..');
    c.socket.write(Buffer.from(`${stuffed}.\r\n`, 'latin1'));
    data = (await c.reply()).join('\n');
  }
  c.write('QUIT\r\n');
  c.socket.end();
  return { rcpt, data };
}

describe.skipIf(!postfixAvailable)('startGateway relaying to a real Postfix', () => {
  let postfix: PostfixInstance;
  let gw: Gateway;
  let smtpPort: number;
  let eodPort: number;
  const log = new MemoryLogger();

  beforeAll(async () => {
    smtpPort = await freePort();
    eodPort = await freePort();
    postfix = await startPostfix({
      mainCf: `virtual_mailbox_maps = inline:{ bob@example.com=bob/, carol@example.com=carol/ }
mxguard_eod = check_sender_access inline:{ { refused@example.net = REJECT 5.7.1 Content refused here } }
`,
      smtpd: {
        [smtpPort]: '',
        [eodPort]: '-o smtpd_end_of_data_restrictions=$mxguard_eod',
      },
    });
    gw = await startGateway({
      chain: chain([]),
      log,
      relay: `smtp://127.0.0.1:${smtpPort}`,
      port: 0,
      hostname: 'mx.example.com',
    });
  }, 60_000);

  afterAll(async () => {
    await gw?.close();
    await postfix?.close();
  });

  it('hands accepted mail to Postfix: our Received header, then the message byte for byte', async () => {
    const msg = trickyMessage('byte-for-byte');
    const r = await transaction(gw.port, 'a@sender.example.net', ['bob@example.com'], msg);
    expect(r.rcpt[0]).toMatch(/^250 /);
    // Our 250 carries Postfix's queue id: the client's acknowledgement is Postfix's.
    expect(r.data).toMatch(/^250 2\.0\.0 Ok: queued as [0-9A-Z]+$/);
    const file = await until(async () => (await maildirMessages(postfix))[0]);
    const stored = await readFile(file);
    // Postfix stores LF line ends and adds its own Return-Path, Delivered-To and Received on top.
    const ours = stored.indexOf(
      'Received: from client.example.net (unknown [127.0.0.1])\n\tby mx.example.com (mxguard)',
    );
    expect(ours).toBeGreaterThan(0);
    const afterOurs = stored.subarray(stored.indexOf('From: a@sender.example.net', ours));
    expect(afterOurs.equals(Buffer.from(msg.toString('latin1').replace(/\r\n/g, '\n'), 'latin1'))).toBe(true);
    expect(stored.subarray(0, ours).toString()).toMatch(/^Return-Path: <a@sender\.example\.net>\n/);
  });

  it('refuses a recipient Postfix does not know at RCPT, with Postfix’s words, before any DATA', async () => {
    const r = await transaction(gw.port, 'a@sender.example.net', ['nobody@example.com'], trickyMessage('x'));
    expect(r.rcpt[0]).toBe(
      '550 5.1.1 <nobody@example.com>: Recipient address rejected: User unknown in virtual mailbox table',
    );
    expect(r.data).toBeUndefined();
    expect(log.lines.some((l) => l.obj.check === 'downstream-recipient')).toBe(true);
  });

  it('passes a Postfix refusal at the end of DATA on to the client (no bounce from us)', async () => {
    const g2 = await startGateway({
      chain: chain([]),
      log,
      relay: `smtp://127.0.0.1:${eodPort}`,
      port: 0,
    });
    try {
      const r = await transaction(g2.port, 'refused@example.net', ['bob@example.com'], trickyMessage('eod'));
      expect(r.data).toBe('554 5.7.1 <refused@example.net>: Sender address rejected: Content refused here');
    } finally {
      await g2.close();
    }
  });

  it('over STARTTLS: the Received header says ESMTPS with the TLS version and cipher (RFC 3848)', async () => {
    const g4 = await startGateway({
      chain: chain([]),
      log,
      relay: `smtp://127.0.0.1:${smtpPort}`,
      port: 0,
      tls: selfSigned(),
    });
    const before = new Set(await maildirMessages(postfix));
    try {
      const t = nodemailer.createTransport({
        host: '127.0.0.1',
        port: g4.port,
        requireTLS: true,
        tls: { rejectUnauthorized: false },
        name: 'tls.example.net',
      });
      await t.sendMail({
        envelope: { from: 'a@sender.example.net', to: ['bob@example.com'] },
        raw: trickyMessage('over-tls'),
      });
      t.close();
    } finally {
      await g4.close();
    }
    const file = await until(async () => (await maildirMessages(postfix)).find((f) => !before.has(f)));
    const text = await readFile(file, 'latin1');
    expect(text).toMatch(
      /\nReceived: from tls\.example\.net \(unknown \[127\.0\.0\.1\]\)\n\tby mx\.example\.com \(mxguard\) with ESMTPS id \S+\n\t\(using TLSv1\.[23] with cipher [A-Z0-9_-]+\)\n\tfor <bob@example\.com>; /,
    );
  });

  it('a message over the size limit gets 552 5.3.4 and the downstream keeps nothing of it', async () => {
    const g5 = await startGateway({
      chain: chain([]),
      log,
      relay: `smtp://127.0.0.1:${smtpPort}`,
      port: 0,
      maxMessageBytes: 2000,
    });
    const before = (await maildirMessages(postfix)).length;
    const queuedBefore = await postfix.queued();
    try {
      const big = Buffer.concat([
        trickyMessage('too-big'),
        Buffer.from('x'.repeat(78).concat('\r\n').repeat(60)),
      ]);
      const r = await transaction(g5.port, 'a@sender.example.net', ['bob@example.com'], big);
      expect(r.data).toMatch(/^552 5\.3\.4 /);
      // Nothing of it reached Postfix's queue or mailbox.
      await new Promise((res) => setTimeout(res, 500));
      expect((await maildirMessages(postfix)).length).toBe(before);
      expect(await postfix.queued()).toBe(queuedBefore);
    } finally {
      await g5.close();
    }
  });

  it('a relay that is not there is a 451 at DATA, never a 5xx', async () => {
    const dead = await freePort();
    const g3 = await startGateway({ chain: chain([]), log, relay: `smtp://127.0.0.1:${dead}`, port: 0 });
    try {
      const r = await transaction(
        g3.port,
        'a@sender.example.net',
        ['bob@example.com'],
        trickyMessage('dead'),
      );
      // The recipient check cannot ask: the recipient passes, and DATA decides.
      expect(r.rcpt[0]).toMatch(/^250 /);
      expect(r.data).toBe('451 4.4.1 Downstream mail server unavailable, try again later');
    } finally {
      await g3.close();
    }
  });

  it('Postfix stopped mid-run: every acknowledged message is in Postfix, every other got a 4xx', async () => {
    const before = (await maildirMessages(postfix)).length;
    const transport = nodemailer.createTransport({
      host: '127.0.0.1',
      port: gw.port,
      pool: true,
      maxConnections: 4,
      ignoreTLS: true,
    });
    const total = 80;
    const acked: string[] = [];
    const deferred: string[] = [];
    const other: string[] = [];
    let sent = 0;
    let stopping: Promise<void> | undefined;
    await Promise.all(
      Array.from({ length: 4 }, async (_, w) => {
        for (;;) {
          const i = sent++;
          if (i >= total) return;
          if (i === 30) stopping = postfix.stop();
          const id = `load-${w}-${i}`;
          try {
            await transport.sendMail({
              envelope: { from: 'a@sender.example.net', to: ['carol@example.com'] },
              raw: trickyMessage(id),
            });
            acked.push(id);
          } catch (err) {
            const code = (err as { responseCode?: number }).responseCode ?? 0;
            (code >= 400 && code < 500 ? deferred : other).push(`${id} ${code}`);
          }
        }
      }),
    );
    transport.close();
    await stopping;
    expect(other).toEqual([]);
    expect(acked.length + deferred.length).toBe(total);
    expect(deferred.length).toBeGreaterThan(0);
    expect(acked.length).toBeGreaterThan(0);
    // Every acknowledged message is in a mailbox or in Postfix's queue (start it to deliver them).
    await postfix.start();
    const found = await until(async () => {
      const files = (await maildirMessages(postfix)).slice(0);
      if (files.length - before < acked.length) return undefined;
      const texts = await Promise.all(files.map((f) => readFile(f, 'latin1')));
      return texts;
    }, 60_000);
    const all = found.join('\n');
    for (const id of acked) expect(all).toContain(`<${id}@sender.example.net>`);
  }, 120_000);
});
