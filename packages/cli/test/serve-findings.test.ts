import { mkdtempSync, rmSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Logger } from '@mxguard/core';
import { type Gateway, startGateway } from '@mxguard/smtp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createRuntime, gatewayOptions, ReplayClock, type Runtime, runtimeFor } from '../src/index.js';

/**
 * `mxguard serve`'s wiring, in process: an early talker is a finding the reputation record uses,
 * even when the client hangs up before any command is judged (the chain never saw it).
 */
const lines: Record<string, unknown>[] = [];
const log: Logger = {
  debug: () => {},
  info: (o) => lines.push(o as Record<string, unknown>),
  warn: (o) => lines.push(o as Record<string, unknown>),
  error: (o) => lines.push(o as Record<string, unknown>),
};

/** A line-oriented SMTP client over a raw socket, so the test decides when it talks. */
class Client {
  private buf = '';
  private readonly got: string[] = [];
  private wake: (() => void) | undefined;
  private constructor(private readonly s: Socket) {
    s.setEncoding('latin1');
    s.on('data', (d: string) => {
      this.buf += d;
      for (let i = this.buf.indexOf('\r\n'); i >= 0; i = this.buf.indexOf('\r\n')) {
        this.got.push(this.buf.slice(0, i));
        this.buf = this.buf.slice(i + 2);
      }
      this.wake?.();
    });
    s.on('close', () => this.wake?.());
    s.on('error', () => {});
  }
  static open(port: number): Promise<Client> {
    return new Promise((res, rej) => {
      const s = connect({ port, host: '127.0.0.1' }, () => res(new Client(s)));
      s.once('error', rej);
    });
  }
  write(text: string): void {
    this.s.write(text);
  }
  /** The last line of the next reply (multi-line replies have `-` after the code). */
  async reply(): Promise<string> {
    for (;;) {
      const i = this.got.findIndex((l) => /^\d{3} /.test(l));
      if (i >= 0) return this.got.splice(0, i + 1)[i] as string;
      if (this.s.destroyed) throw new Error('connection closed');
      await new Promise<void>((r) => {
        this.wake = r;
      });
    }
  }
  async cmd(line: string): Promise<string> {
    this.write(`${line}\r\n`);
    return this.reply();
  }
  close(): void {
    this.s.destroy();
  }
}

describe('mxguard serve: adapter findings reach the reputation record', () => {
  const dir = mkdtempSync(join(tmpdir(), 'mxguard-findings-'));
  const clock = new ReplayClock();
  let rt: Runtime;
  let gw: Gateway;
  let hold: Promise<void> = Promise.resolve();

  beforeAll(async () => {
    clock.set(1_700_000_000_000);
    rt = await createRuntime(
      // Low thresholds so two findings are enough: doubt at 1, 450 for every command at 2.
      { options: { reputation: { doubt: 1, defer: 2, reject: 30 } } },
      { offline: true, log, clock },
    );
    gw = await startGateway({
      ...gatewayOptions(rt, { spoolDir: dir, host: '127.0.0.1', port: 0 }),
      // The greeting waits for enrich here, so the test talks early for sure (no timing).
      evaluateConnect: true,
      enrich: async () => {
        await hold;
        return {};
      },
    });
  });
  afterAll(async () => {
    await gw?.close();
    await rt?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('wires the runtime’s onFlag into the gateway', () => {
    expect(rt.onFlag).toBeTypeOf('function');
    expect(gatewayOptions(rt, { spoolDir: dir, host: '127.0.0.1', port: 0 }).onFlag).toBe(rt.onFlag);
  });

  async function earlyTalkerThatHangsUp(): Promise<void> {
    let open = () => {};
    hold = new Promise<void>((r) => {
      open = r;
    });
    const c = await Client.open(gw.port);
    c.write('EHLO early.example.net\r\n');
    const seen = lines.filter((l) => l.event === 'finding').length;
    for (let i = 0; i < 200 && lines.filter((l) => l.event === 'finding').length === seen; i++) {
      await new Promise((r) => setTimeout(r, 10));
    }
    open();
    hold = Promise.resolve();
    expect(await c.reply()).toMatch(/^220 /);
    expect(await c.reply()).toMatch(/^250 /);
    expect(await c.cmd('QUIT')).toMatch(/^221 /);
    c.close();
  }

  it('an early talker that quits before any command is judged still counts against its network', async () => {
    // A polite client of the network passes first: a clean record costs nothing.
    const polite = async () => {
      const c = await Client.open(gw.port);
      expect(await c.reply()).toMatch(/^220 /);
      await c.cmd('EHLO mail.example.net');
      await c.cmd('MAIL FROM:<alice@example.net>');
      const r = await c.cmd('RCPT TO:<postmaster@example.com>');
      await c.cmd('QUIT');
      c.close();
      return r;
    };
    expect(await polite()).not.toMatch(/^4|^5/);

    await earlyTalkerThatHangsUp();
    await earlyTalkerThatHangsUp();
    const findings = lines.filter((l) => l.event === 'finding');
    expect(findings.map((f) => f.flag)).toEqual(['earlyTalker', 'earlyTalker']);
    // No command of the early talkers was judged: what counts is the finding itself.
    expect(lines.filter((l) => l.event === 'decision' && l.action !== 'next')).toHaveLength(0);

    // Another host of the same /24 now meets the escalation: 450 4.7.1 from the reputation check.
    expect(await polite()).toMatch(/^450 4\.7\.1 .*\(reputation/);
  });
});

describe('mxguard serve/policy without reachable DNS (the README main job on a machine offline)', () => {
  it('starts offline and names every check that is off because DNS is unreachable', async () => {
    const rt = await runtimeFor({}, { offline: false, log, dnsProbe: async () => false });
    try {
      expect(rt.notes[0]).toBe(
        'DNS unreachable: dnsbl, dnswl, rhsbl, fcrdns, helo-resolves, sender-domain, recipient-domain, callout and reverse DNS are off',
      );
      expect(rt.lookupRdns).toBeUndefined();
      const d = await rt.policy.chain.evaluate({
        clientAddress: '192.0.2.7',
        helo: 'mail.example.net',
        mailFrom: 'a@example.net',
        rcptTo: 'postmaster@example.com',
        stage: 'rcpt',
      });
      expect(d.action).not.toBe('reject');
      expect(d.trace.find((t) => t.check === 'dnsbl')?.reason).toMatch(/skipped: offline/);
    } finally {
      await rt.close();
    }
  });
});
