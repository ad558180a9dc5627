/**
 * The client against a real p0f 3, started by the test on the loopback interface, fingerprinting a
 * TCP connection the test itself makes to a loopback server. p0f needs root (it opens a packet
 * capture); without it the test says so and skips. CI runs as root and runs it.
 */
import type { ChildProcess } from 'node:child_process';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import type { AddressInfo, Server } from 'node:net';
import { connect, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ManualClock, silentLogger } from '@mxguard/core';
import type { P0fAnswer } from '@mxguard/signals';
import { osFingerprintCheck, P0fClient } from '@mxguard/signals';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const P0F = '/usr/sbin/p0f';
const isRoot = typeof process.getuid === 'function' && process.getuid() === 0;
const why = !existsSync(P0F)
  ? `${P0F} is not installed`
  : !isRoot
    ? 'p0f needs root to capture on lo'
    : undefined;
if (why) console.warn(`p0f-real: skipped: ${why}`);

/** Bounded polling for an event (a socket appearing, p0f having seen a SYN): never decides the outcome by time. */
async function until<T>(probe: () => Promise<T | undefined>, tries: number, what: string): Promise<T> {
  for (let i = 0; i < tries; i++) {
    const v = await probe();
    if (v !== undefined) return v;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`gave up waiting for ${what}`);
}

describe.skipIf(why !== undefined)('P0fClient against a real p0f on lo', () => {
  let dir: string;
  let p0f: ChildProcess;
  let server: Server;
  let port: number;
  let socketPath: string;
  let stderr = '';

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'mxguard-p0f-'));
    socketPath = join(dir, 'p0f.sock');
    server = createServer((s) => s.end('220 test\r\n'));
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    port = (server.address() as AddressInfo).port;
    p0f = spawn(P0F, ['-i', 'lo', '-s', socketPath, '-f', '/etc/p0f/p0f.fp', `tcp port ${port}`], {
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    p0f.stderr?.on('data', (d: Buffer) => {
      stderr += d.toString();
    });
    let exited: number | null | undefined;
    p0f.on('exit', (code) => {
      exited = code;
    });
    // p0f opens the capture before the API socket, so a socket that accepts means it is listening.
    await until(
      async () => {
        if (exited !== undefined) throw new Error(`p0f exited (${exited}): ${stderr}`);
        if (!existsSync(socketPath)) return undefined;
        return new Promise<true | undefined>((resolve) => {
          const s = connect(socketPath);
          s.on('connect', () => {
            s.destroy();
            resolve(true);
          });
          s.on('error', () => resolve(undefined));
        });
      },
      200,
      'the p0f API socket',
    );
  });

  afterAll(async () => {
    if (p0f && p0f.exitCode === null) {
      const gone = new Promise((r) => p0f.once('exit', r));
      p0f.kill('SIGTERM');
      await gone;
    }
    if (server) await new Promise<void>((r) => server.close(() => r()));
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('fingerprints a loopback connection the test makes, and the client parses the answer', async () => {
    // Make a connection p0f sees: SYN from 127.0.0.1 to our port.
    await new Promise<void>((resolve, reject) => {
      const c = connect(port, '127.0.0.1');
      c.on('data', () => {});
      c.on('close', () => resolve());
      c.on('error', reject);
    });
    const client = new P0fClient({ socketPath, cacheMs: 0, timeoutMs: 2000 });
    // p0f reads the capture on its own schedule: wait (bounded) until it has an opinion.
    const answer = await until<P0fAnswer>(
      async () => {
        const a = await client.query('127.0.0.1');
        return a.status === 'no-match' ? undefined : a;
      },
      100,
      'p0f to see the connection',
    ).catch(async () => client.query('127.0.0.1'));
    console.info(`p0f-real: p0f answered ${JSON.stringify(answer)}`);
    expect(['ok', 'no-match']).toContain(answer.status);
    if (answer.status === 'ok') {
      const h = answer.host;
      expect(h.totalConn).toBeGreaterThanOrEqual(1);
      expect(h.lastSeen).toBeGreaterThanOrEqual(h.firstSeen);
      expect(h.firstSeen).toBeGreaterThan(1_600_000_000);
      expect(h.distance).toBeGreaterThanOrEqual(-1);
      expect(h.distance).toBeLessThan(256);
      expect(h.osMatchQ).toBeLessThanOrEqual(3);
      // The kernel's own stack: Linux, or unrecognised ('').
      expect(['Linux', '']).toContain(h.osName);
      for (const s of [h.osName, h.osFlavor, h.httpName, h.httpFlavor, h.linkType, h.language]) {
        expect(s).toMatch(/^[\x20-\x7e]{0,31}$/);
      }

      // The check turns it into a finding with no score: Linux is what mail servers run.
      const check = osFingerprintCheck({ p0f: client });
      const v = await check.run(
        { clientAddress: '127.0.0.1', stage: 'connect' },
        { clock: new ManualClock(0), log: silentLogger, findings: [] },
      );
      expect(v.action).toBe('next');
      expect(v.findings?.every((f) => !f.score)).toBe(true);
    }

    // An address p0f never saw: a well-formed no-match, from the real daemon.
    expect(await client.query('192.0.2.77')).toEqual({ status: 'no-match' });
    expect(await client.query('2001:db8::77')).toEqual({ status: 'no-match' });
  });
});
