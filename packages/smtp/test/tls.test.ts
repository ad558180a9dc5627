/**
 * STARTTLS on the gateway, tried with real clients: swaks `-tls` delivers, `openssl s_client
 * -starttls smtp` sees our certificate and protocol, a client below the minimum TLS version is
 * refused, and `reloadTls` swaps the certificate for new connections (a bad one keeps the old).
 */
import { spawn } from 'node:child_process';
import { chain } from '@mxguard/core';
import { type Gateway, startGateway } from '@mxguard/smtp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { selfSigned } from '../../../testing/tls.js';
import { MemoryLogger, tempDir } from './helpers.js';

/** Runs a client (never spawnSync: the gateway lives in this process) and returns what it printed. */
function run(cmd: string, args: string[], input = ''): Promise<string> {
  return new Promise((resolve) => {
    const child = spawn(cmd, args);
    let out = '';
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
    });
    child.stderr.on('data', (d: Buffer) => {
      out += d.toString();
    });
    const timer = setTimeout(() => child.kill(), 20_000);
    child.on('close', () => {
      clearTimeout(timer);
      resolve(out);
    });
    child.stdin.end(input);
  });
}

function sClient(port: number, extra: string[] = []): Promise<string> {
  return run(
    'openssl',
    ['s_client', '-connect', `127.0.0.1:${port}`, '-starttls', 'smtp', '-brief', ...extra],
    'QUIT\r\n',
  );
}

describe('STARTTLS', () => {
  let gw: Gateway;
  let spool: { dir: string; remove: () => Promise<void> };
  const first = selfSigned('mx.example.com');

  beforeAll(async () => {
    spool = await tempDir('mxguard-tls-');
    gw = await startGateway({
      chain: chain([]),
      log: new MemoryLogger(),
      spoolDir: spool.dir,
      port: 0,
      tls: first,
    });
  });
  afterAll(async () => {
    await gw.close();
    await spool.remove();
  });

  it('swaks -tls: STARTTLS offered, the session goes on encrypted and the message is accepted', async () => {
    const out = await run('swaks', [
      '--server',
      `127.0.0.1:${gw.port}`,
      '--tls',
      '--from',
      'a@example.net',
      '--to',
      'u@example.com',
      '--timeout',
      '20',
    ]);
    expect(out).toMatch(/<- {2}250-STARTTLS/);
    expect(out).toMatch(/=== TLS started with cipher TLSv1\.[23]:/);
    expect(out).toMatch(/<~ {2}250 2\.0\.0 Ok: queued as /);
  });

  it('openssl s_client -starttls smtp: our certificate, TLS 1.2 or newer', async () => {
    const out = await sClient(gw.port);
    expect(out).toMatch(/Protocol version: TLSv1\.[23]/);
    expect(out).toMatch(/Peer certificate: CN ?= ?mx\.example\.com/);
  });

  it('minVersion: TLS 1.2 is taken by default and refused by a gateway that asks for 1.3', async () => {
    expect(await sClient(gw.port, ['-tls1_2'])).toMatch(/Protocol version: TLSv1\.2/);
    const strict = await startGateway({
      chain: chain([]),
      log: new MemoryLogger(),
      spoolDir: spool.dir,
      port: 0,
      tls: { ...first, minVersion: 'TLSv1.3' },
    });
    try {
      const out = await sClient(strict.port, ['-tls1_2']);
      expect(out).not.toMatch(/Protocol version/);
      expect(out).toMatch(/alert protocol version|unsupported protocol|no protocols available/i);
      expect(await sClient(strict.port, ['-tls1_3'])).toMatch(/Protocol version: TLSv1\.3/);
    } finally {
      await strict.close();
    }
  });

  it('reloadTls: new connections get the new certificate; a broken one is refused and the old stays', async () => {
    gw.reloadTls(selfSigned('renewed.example.com'));
    expect(await sClient(gw.port)).toMatch(/Peer certificate: CN ?= ?renewed\.example\.com/);
    expect(() => gw.reloadTls({ key: first.key, cert: 'not a certificate' })).toThrow();
    expect(await sClient(gw.port)).toMatch(/Peer certificate: CN ?= ?renewed\.example\.com/);
  });
});
