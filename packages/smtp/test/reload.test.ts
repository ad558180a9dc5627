import { chain, ManualClock } from '@mxguard/core';
import { type GatewayOptions, startGateway } from '@mxguard/smtp';
import { describe, expect, it } from 'vitest';
import { recipientBlock } from './checks.js';
import { counterRandom, MemoryLogger, RawClient, tempDir } from './helpers.js';

// Gateway.reload: new connections get the new policy, open ones finish under theirs, and the
// connection limits keep counting the connections of the old policy while they drain.

const clock = new ManualClock(1_700_000_000_000);

/** A spooling gateway whose chain refuses `blocked@`, with example.com ours. */
async function spooling(extra: Partial<GatewayOptions> = {}) {
  const spool = await tempDir('mxguard-reload-');
  const log = new MemoryLogger();
  const gw = await startGateway({
    chain: chain([recipientBlock], { clock }),
    log,
    clock,
    random: counterRandom(),
    spoolDir: spool.dir,
    port: 0,
    recipientDomains: ['example.com'],
    ...extra,
  });
  return { spool, log, gw };
}

describe('Gateway.reload', () => {
  it('hands new connections to the new policy; an open one finishes under its own; the limits count both', async () => {
    const { spool, log, gw } = await spooling({ connectionLimits: { perClient: 2 } });
    try {
      const old = await RawClient.open(gw.port);
      expect(await old.line()).toMatch(/^220 /);
      expect(await old.cmd('EHLO mail.example.net')).toMatch(/^250 /);
      expect(await old.cmd('MAIL FROM:<a@example.net>')).toMatch(/^250 /);

      // The new policy: no recipient check, and example.org is ours instead of example.com.
      let drained = false;
      const reloaded = gw
        .reload({
          chain: chain([], { clock }),
          log,
          recipientDomains: ['example.org'],
          connectionLimits: { perClient: 2 },
        })
        .then(() => {
          drained = true;
        });
      expect(gw.connections).toBe(1);

      const fresh = await RawClient.open(gw.port);
      expect(await fresh.line()).toMatch(/^220 /);
      await fresh.cmd('EHLO mail.example.net');
      await fresh.cmd('MAIL FROM:<a@example.net>');
      expect(await fresh.cmd('RCPT TO:<blocked@example.org>')).toMatch(/^250 /);
      expect(await fresh.cmd('RCPT TO:<b@example.com>')).toMatch(/^554 5\.7\.1 /);
      expect(gw.connections).toBe(2);

      // The per-client limit (2) counts the old policy's connection too: a third is refused.
      const third = await RawClient.open(gw.port);
      expect(await third.line()).toMatch(/^421 4\.7\.0 /);
      third.close();

      // The connection opened before the reload is judged by the policy it started with.
      expect(await old.cmd('RCPT TO:<blocked@example.com>')).toMatch(/^554 5\.7\.1 .*Access denied/);
      expect(await old.cmd('RCPT TO:<b@example.com>')).toMatch(/^250 /);
      expect(await old.cmd('RCPT TO:<b@example.org>')).toMatch(/^554 5\.7\.1 /);
      expect(drained).toBe(false);
      old.close();
      // Resolved once the old policy's last connection has closed (polled every 100 ms; 5 s bound).
      await Promise.race([
        reloaded,
        new Promise((_, rej) => setTimeout(() => rej(new Error('not drained')), 5000)),
      ]);
      expect(drained).toBe(true);
      fresh.close();
    } finally {
      await gw.close();
      await spool.remove();
    }
  });

  it('a policy that cannot be built throws at once, and the one in force stays whole', async () => {
    const { spool, log, gw } = await spooling();
    try {
      // Checking recipients with the downstream needs an smtp:// relay; this gateway spools.
      expect(() =>
        gw.reload({
          chain: chain([], { clock }),
          log,
          recipientDomains: ['example.org'],
          verifyRecipients: true,
        }),
      ).toThrow(/verifyRecipients needs an smtp:\/\/ relay/);
      const c = await RawClient.open(gw.port);
      expect(await c.line()).toMatch(/^220 /);
      await c.cmd('EHLO mail.example.net');
      await c.cmd('MAIL FROM:<a@example.net>');
      expect(await c.cmd('RCPT TO:<blocked@example.com>')).toMatch(/^554 5\.7\.1 .*Access denied/);
      expect(await c.cmd('RCPT TO:<b@example.com>')).toMatch(/^250 /);
      expect(await c.cmd('RCPT TO:<b@example.org>')).toMatch(/^554 5\.7\.1 /);
      c.close();
    } finally {
      await gw.close();
      await spool.remove();
    }
  });
});
