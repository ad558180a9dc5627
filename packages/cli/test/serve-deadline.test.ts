/**
 * Slow DNS through the gateway: the gateway `mxguard serve` starts (recommended checks, DNS lists,
 * PTR lookup and prefetch at connect), its resolver pointed at the fault-injecting DNS server on
 * loopback, 10 SMTP clients at once. Before the time budget RCPT replies took 44-60 s; now every
 * MAIL and RCPT reply comes within the command budget (2 s here) plus the 250 ms grace, and none is
 * a 5xx. The bound asserted is budget + 1000 ms: the grace plus 750 ms for a loaded machine.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type Gateway, startGateway } from '@mxguard/smtp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Fault, TestDnsServer } from '../../dns/test/helpers/dns-server.js';
import { MemoryLogger, RawClient } from '../../smtp/test/helpers.js';
import { createRuntime, gatewayOptions, type Runtime } from '../src/index.js';

const BUDGET = 2000;
const MARGIN = 1000;
const CLIENTS = 10;

const dns = new TestDnsServer();
const dir = mkdtempSync(join(tmpdir(), 'mxguard-serve-deadline-'));
let rt: Runtime;
let gw: Gateway;
const log = new MemoryLogger();

beforeAll(async () => {
  await dns.start();
  rt = await createRuntime(
    {
      ourDomains: ['example.com'],
      dnsLists: ['zen.test=127.0.0.[2..11]*3'],
      rhsLists: ['dbl.test=127.0.1.[2..99]'],
    },
    { resolver: dns.address, log, budget: BUDGET },
  );
  gw = await startGateway(
    gatewayOptions({ ...rt, log }, { spoolDir: dir, host: '127.0.0.1', port: 0, budget: BUDGET }),
  );
});
afterAll(async () => {
  await gw?.close();
  await rt?.close();
  await dns.stop();
  rmSync(dir, { recursive: true, force: true });
});

/** One client's conversation; the time of each reply after its command. */
async function conversation(i: number): Promise<{ cmd: string; ms: number; reply: string }[]> {
  const c = await RawClient.open(gw.port);
  try {
    const out: { cmd: string; ms: number; reply: string }[] = [];
    await c.line();
    for (const cmd of [
      `EHLO mail.sender${i}.test`,
      `MAIL FROM:<alice@sender${i}.test>`,
      'RCPT TO:<bob@example.com>',
      'RCPT TO:<carol@example.com>',
    ]) {
      const started = performance.now();
      const reply = await c.cmd(cmd);
      out.push({ cmd: cmd.split(/[ :]/)[0] ?? cmd, ms: performance.now() - started, reply });
      if (!reply.startsWith('2')) break;
    }
    return out;
  } finally {
    c.close();
  }
}

describe('slow DNS through the gateway, 10 clients at once', () => {
  for (const fault of ['drop', 'wrongid', 'slow'] as (Fault | 'slow')[]) {
    it(`${fault === 'slow' ? 'a 3 s-slow server' : fault}: every reply within the budget, none a 5xx`, async () => {
      dns.fault = fault === 'slow' ? undefined : fault;
      dns.delay = fault === 'slow' ? 3000 : 0;
      const runs = await Promise.all(Array.from({ length: CLIENTS }, (_, i) => conversation(i)));
      for (const steps of runs) {
        // The client got as far as RCPT: MAIL was not refused.
        expect(steps.map((s) => s.cmd)).toContain('RCPT');
        for (const { ms, reply } of steps) {
          expect(ms).toBeLessThan(BUDGET + MARGIN);
          expect(reply).toMatch(/^[24]\d\d /);
        }
      }
    }, 60_000);
  }
});

describe('the wiring of `mxguard serve`', () => {
  it('carries the deadline in the async context only when there is a resolver to read it', async () => {
    const where = { spoolDir: dir, host: '127.0.0.1', port: 0 };
    expect(gatewayOptions(rt, where).deadlineContext).toBe(true);
    const offline = await createRuntime({ ourDomains: ['example.com'] }, { offline: true, log });
    try {
      expect(gatewayOptions(offline, where).deadlineContext).toBe(false);
    } finally {
      await offline.close();
    }
  });
});
