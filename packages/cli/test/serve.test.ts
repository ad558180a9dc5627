import { type ChildProcessWithoutNullStreams, spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

// The README's main job: `mxguard serve` on loopback, tried with the swaks line it prints.
const bin = fileURLToPath(new URL('../dist/bin.js', import.meta.url));
const dir = mkdtempSync(join(tmpdir(), 'mxguard-serve-'));
const spool = join(dir, 'spool');

let child: ChildProcessWithoutNullStreams;
let banner = '';
let server = '';

function swaks(args: string[]): string {
  const r = spawnSync('swaks', ['--server', server, '--timeout', '10', ...args], {
    encoding: 'utf8',
    timeout: 20_000,
  });
  return `${r.stdout}${r.stderr}`;
}

beforeAll(async () => {
  child = spawn(process.execPath, [bin, 'serve', '--offline', '--listen', '127.0.0.1:0', '--spool', spool]);
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`gateway did not start: ${banner}`)), 15_000);
    child.stdout.on('data', (b: Buffer) => {
      banner += b.toString();
      const m = /listening on (127\.0\.0\.1:\d+)/.exec(banner);
      if (m && banner.includes('try:')) {
        server = m[1]!;
        clearTimeout(timer);
        resolve();
      }
    });
    child.on('exit', (code) => reject(new Error(`gateway exited ${code}: ${banner}`)));
  });
});

afterAll(async () => {
  if (child.exitCode === null) {
    const exited = new Promise((r) => child.once('exit', r));
    child.kill('SIGTERM');
    await exited;
  }
});

describe('mxguard serve (the example gateway)', () => {
  it('prints where it listens, what is off, and a swaks line', () => {
    expect(banner).toMatch(/mxguard gateway listening on 127\.0\.0\.1:\d+/);
    expect(banner).toMatch(/note: offline: DNS checks skipped/);
    expect(banner).toMatch(/swaks --server 127\.0\.0\.1:\d+ /);
  });

  it('the printed swaks line gets a verdict: accepted, and the message is spooled whole', () => {
    const line = /^\s+(swaks --server \S+ .*postmaster@example\.com)$/m.exec(banner)?.[1];
    expect(line).toBeDefined();
    const body = join(dir, 'body.eml');
    writeFileSync(body, 'Subject: hello\r\nX-Test: spool\r\n\r\n.leading dot line\r\nbye\r\n');
    const args = line!.split(/\s+/).slice(3); // after "swaks --server HOST"
    const out = swaks([...args, '--data', `@${body}`]);
    expect(out).toMatch(/<-\s+250 .*queued|<-\s+250 2\.0\.0/i);
    const files = readdirSync(spool).filter((f) => f.endsWith('.msg'));
    expect(files).toHaveLength(1);
    const stored = readFileSync(join(spool, files[0]!), 'latin1');
    expect(stored).toContain('X-Test: spool\r\n\r\n.leading dot line\r\nbye\r\n');
  });

  it('a HELO that claims to be us is refused at RCPT with the check named and its enhanced code', () => {
    const out = swaks([
      '--helo',
      'localhost',
      '--from',
      'a@example.net',
      '--to',
      'postmaster@example.com',
      '--quit-after',
      'RCPT',
    ]);
    expect(out).toMatch(
      /<\*\*\s+550 5\.7\.1 <localhost>: Helo command rejected: You are not me \(helo-claims-us\)/,
    );
  });

  it('refuses to relay, loopback included (an inbound MX relays for no one)', () => {
    const out = swaks([
      '--helo',
      'mail.example.net',
      '--from',
      'a@example.net',
      '--to',
      'x@elsewhere.org',
      '--quit-after',
      'RCPT',
    ]);
    expect(out).toMatch(/<\*\*\s+554 5\.7\.1 .*Relay access denied/);
  });
});
