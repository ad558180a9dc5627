import { execFile } from 'node:child_process';
import { readdir } from 'node:fs/promises';
import { promisify } from 'node:util';
import { ManualClock, PROVIDED_CHECKS, recommended } from '@mxguard/core';
import { greylistCheck, memoryStore } from '@mxguard/greylist';
import { type Gateway, startGateway } from '@mxguard/smtp';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { counterRandom, MemoryLogger, RawClient, tempDir } from './helpers.js';

const run = promisify(execFile);

/**
 * End to end: the gateway with core's recommended preset (pure checks only: no resolver here, so
 * the DNS checks are skipped) and the in-memory greylist in `all` mode, driven by swaks.
 */
describe('the gateway with the recommended preset', () => {
  const clock = new ManualClock(1_700_000_000_000);
  const log = new MemoryLogger();
  let gw: Gateway;
  let spool: { dir: string; remove: () => Promise<void> };
  let skipped: readonly string[] = [];
  let hold: Promise<void> = Promise.resolve();

  beforeAll(async () => {
    spool = await tempDir('mxguard-spool-');
    const policy = recommended({
      ourDomains: ['example.com'],
      ourHosts: ['mx.example.com'],
      provided: {
        greylist: greylistCheck({ store: memoryStore({ clock }) }, { mode: 'all', providers: false }),
      },
      // No DNS and no reputation store in this test: the checks that need them are left out, by name.
      omit: PROVIDED_CHECKS.filter((n) => n !== 'greylist'),
      clock,
      log,
    });
    skipped = policy.skipped;
    gw = await startGateway({
      chain: policy.chain,
      log,
      clock,
      random: counterRandom(),
      spoolDir: spool.dir,
      port: 0,
      hostname: 'mx.example.com',
      // The greeting waits for enrich, so a test can hold it back and talk early for sure.
      evaluateConnect: true,
      enrich: async () => {
        await hold;
        return {};
      },
    });
  });
  afterAll(async () => {
    await gw?.close();
    await spool?.remove();
  });

  const swaks = (...args: string[]) =>
    run('/usr/bin/swaks', ['--server', `127.0.0.1:${gw.port}`, ...args]).then(
      (r) => r.stdout,
      (e: { stdout: string }) => e.stdout,
    );

  it('skips what needs DNS and keeps the rest', () => {
    expect(skipped).toContain('dnsbl');
    expect(skipped).not.toContain('greylist');
    expect(skipped).not.toContain('pipelining');
  });

  it('refuses a HELO that claims to be us, with the check named on the wire', async () => {
    const out = await swaks(
      '--helo',
      'mx.example.com',
      '--from',
      'a@sender.example.net',
      '--to',
      'user@example.com',
    );
    const line = out.split('\n').find((l) => l.startsWith('<** '));
    expect(line).toMatch(/^<\*\* 5\d\d 5\.\d+\.\d+ .*\(helo-claims-us/);
    const d = log.decisions().find((x) => x.check === 'helo-claims-us');
    expect(d).toMatchObject({ stage: 'rcpt', helo: 'mx.example.com', action: 'reject' });
  });

  it('greylists a new triplet, then accepts and spools the retry', async () => {
    const args = [
      '--helo',
      'client.example.net',
      '--from',
      'a@sender.example.net',
      '--to',
      'user@example.com',
    ];
    const first = await swaks(...args);
    expect(first).toMatch(/<\*\* 450 4\.2\.0 /);
    clock.advance(301_000);
    const second = await swaks(...args);
    expect(second).toMatch(/<- {2}250 2\.0\.0 Ok: queued as /);
    expect((await readdir(spool.dir)).filter((f) => f.endsWith('.msg'))).toHaveLength(1);
  });

  it('refuses an early talker through the pipelining check', async () => {
    let open = () => {};
    hold = new Promise<void>((r) => {
      open = r;
    });
    const c = await RawClient.open(gw.port);
    c.write('EHLO early.example.net\r\n');
    await vi.waitFor(() => expect(log.events('finding').map((f) => f.flag)).toContain('earlyTalker'));
    open();
    hold = Promise.resolve();
    expect(await c.line()).toBe('220 mx.example.com ESMTP');
    await c.line();
    await c.cmd('MAIL FROM:<a@sender.example.net>');
    expect(await c.cmd('RCPT TO:<user@example.com>')).toMatch(
      /^554 5\.5\.0 Error: SMTP protocol violation: talked before the greeting \(pipelining/,
    );
    c.close();
  });
});
