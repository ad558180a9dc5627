/**
 * Unauthorized pipelining on the wire, with PIPELINING offered (the gateway's default), through
 * the recommended `pipelining` check (core's, as Postfix's reject_unauth_pipelining: 554 5.5.0):
 * a HELO client that sends MAIL, RCPT and DATA in one write, and an EHLO client that sends the
 * message before our 354. An EHLO client that pipelines as RFC 2920 allows is served.
 */
import { chain, pipeliningCheck } from '@mxguard/core';
import { type Gateway, startGateway } from '@mxguard/smtp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MemoryLogger, RawClient, tempDir } from './helpers.js';

describe('unauthorized pipelining through the gateway (PIPELINING offered)', () => {
  const log = new MemoryLogger();
  let gw: Gateway;
  let spool: { dir: string; remove: () => Promise<void> };

  beforeAll(async () => {
    spool = await tempDir('mxguard-pipe-');
    gw = await startGateway({ chain: chain([pipeliningCheck()]), log, spoolDir: spool.dir, port: 0 });
  });
  afterAll(async () => {
    await gw.close();
    await spool.remove();
  });

  it('HELO, then MAIL, RCPT and DATA in one write: the RCPT is refused 554 5.5.0', async () => {
    const c = await RawClient.open(gw.port);
    await c.reply();
    c.write('HELO bot.example.net\r\nMAIL FROM:<a@example.net>\r\nRCPT TO:<u@example.com>\r\nDATA\r\n');
    expect(await c.line()).toMatch(/^250 /); // HELO
    expect(await c.line()).toMatch(/^250 /); // MAIL (delay-reject: judged at RCPT)
    expect(await c.line()).toBe('554 5.5.0 Error: improper use of SMTP command pipelining (pipelining)');
    expect(await c.line()).toMatch(/^503 /); // DATA without a recipient
    c.close();
    expect(log.lines.some((l) => l.obj.event === 'finding' && l.obj.flag === 'unauthorizedPipelining')).toBe(
      true,
    );
  });

  it('EHLO, then the message sent with DATA, before the 354: the RCPT is refused, nothing kept', async () => {
    const c = await RawClient.open(gw.port);
    await c.reply();
    expect(await c.cmd('EHLO bot.example.net')).toMatch(/^250 /);
    c.write('MAIL FROM:<a@example.net>\r\nRCPT TO:<u@example.com>\r\nDATA\r\nSubject: x\r\n\r\nhi\r\n.\r\n');
    expect(await c.line()).toMatch(/^250 /);
    // Seen in the same read as the RCPT, so judged there, as Postfix judges its input buffer.
    expect(await c.line()).toBe('554 5.5.0 Error: improper use of SMTP command pipelining (pipelining)');
    expect(await c.line()).toMatch(/^503 /);
    c.close();
  });

  it('EHLO, then MAIL, RCPT and DATA pipelined and the message after the 354: accepted', async () => {
    const c = await RawClient.open(gw.port);
    await c.reply();
    expect(await c.cmd('EHLO mail.example.net')).toMatch(/^250 /);
    c.write('MAIL FROM:<a@example.net>\r\nRCPT TO:<u@example.com>\r\nDATA\r\n');
    expect(await c.line()).toMatch(/^250 /);
    expect(await c.line()).toMatch(/^250 /);
    expect(await c.line()).toMatch(/^354 /);
    c.write('Subject: x\r\n\r\nhi\r\n.\r\n');
    expect(await c.line()).toMatch(/^250 2\.0\.0 Ok: queued as /);
    c.close();
  });
});
