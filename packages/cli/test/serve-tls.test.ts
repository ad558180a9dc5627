/**
 * `mxguard serve --tls-key --tls-cert`: STARTTLS with the files given, and SIGHUP re-reads them
 * (a renewed certificate is served to new connections; a broken one keeps the old in force and
 * the log says why). Tried with openssl s_client.
 */
import { type ChildProcessWithoutNullStreams, spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { selfSigned } from '../../../testing/tls.js';

const bin = fileURLToPath(new URL('../dist/bin.js', import.meta.url));
const dir = mkdtempSync(join(tmpdir(), 'mxguard-serve-tls-'));
const keyFile = join(dir, 'key.pem');
const certFile = join(dir, 'cert.pem');

let child: ChildProcessWithoutNullStreams;
let banner = '';
let logs = '';
let port = 0;

function peer(): string {
  const r = spawnSync(
    'openssl',
    ['s_client', '-connect', `127.0.0.1:${port}`, '-starttls', 'smtp', '-brief'],
    { input: 'QUIT\r\n', encoding: 'utf8', timeout: 20_000 },
  );
  return /Peer certificate: CN ?= ?(\S+)/.exec(`${r.stdout}${r.stderr}`)?.[1] ?? '';
}

async function until(f: () => boolean, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!f()) {
    if (Date.now() > end) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 50));
  }
}

beforeAll(async () => {
  const first = selfSigned('first.example.com');
  writeFileSync(keyFile, first.key);
  writeFileSync(certFile, first.cert);
  child = spawn(process.execPath, [
    bin,
    'serve',
    '--offline',
    '--listen',
    '127.0.0.1:0',
    '--spool',
    join(dir, 'spool'),
    '--tls-key',
    keyFile,
    '--tls-cert',
    certFile,
  ]);
  child.stderr.on('data', (b: Buffer) => {
    logs += b.toString();
  });
  child.stdout.on('data', (b: Buffer) => {
    banner += b.toString();
  });
  await until(() => /listening on 127\.0\.0\.1:\d+/.test(banner) && banner.includes('try:'), 45_000);
  port = Number(/listening on 127\.0\.0\.1:(\d+)/.exec(banner)?.[1]);
});

afterAll(async () => {
  if (child && child.exitCode === null) {
    const exited = new Promise((r) => child.once('exit', r));
    child.kill('SIGTERM');
    await exited;
  }
  rmSync(dir, { recursive: true, force: true });
});

describe('mxguard serve with STARTTLS', () => {
  it('says STARTTLS is offered, and serves the certificate from the file', () => {
    expect(banner).toContain('STARTTLS: offered (TLSv1.2 or newer');
    expect(peer()).toBe('first.example.com');
  });

  it('SIGHUP re-reads the files; a broken pair keeps the old one and is logged', async () => {
    const renewed = selfSigned('renewed.example.com');
    writeFileSync(keyFile, renewed.key);
    writeFileSync(certFile, renewed.cert);
    child.kill('SIGHUP');
    await until(() => logs.includes('"event":"tls-reloaded"'));
    expect(peer()).toBe('renewed.example.com');

    writeFileSync(certFile, 'not a certificate');
    child.kill('SIGHUP');
    await until(() => logs.includes('"event":"tls-reload-failed"'));
    expect(peer()).toBe('renewed.example.com');
    expect(child.exitCode).toBeNull();
  });

  it('refuses --tls-key without --tls-cert as a usage error (exit 2)', () => {
    const r = spawnSync(process.execPath, [bin, 'serve', '--offline', '--tls-key', keyFile], {
      encoding: 'utf8',
      timeout: 20_000,
    });
    expect(r.status).toBe(2);
    expect(r.stderr).toContain('--tls-key and --tls-cert go together');
  });
});
