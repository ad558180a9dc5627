/**
 * `mxguard policy` as a user starts it: the built binary on a loopback port, asked by a client
 * speaking Postfix's policy delegation protocol.
 */
import { type ChildProcessWithoutNullStreams, spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { askPolicy } from '../../../testing/mxguard.js';

const bin = fileURLToPath(new URL('../dist/bin.js', import.meta.url));
let child: ChildProcessWithoutNullStreams;
let banner = '';
let port = 0;

beforeAll(async () => {
  child = spawn(process.execPath, [bin, 'policy', '--offline', '--listen', '127.0.0.1:0']);
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`policy server did not start: ${banner}`)), 15_000);
    child.stdout.on('data', (b: Buffer) => {
      banner += b.toString();
      const m = /listening on inet:127\.0\.0\.1:(\d+)/.exec(banner);
      if (m && banner.includes('main.cf')) {
        port = Number(m[1]);
        clearTimeout(timer);
        resolve();
      }
    });
    child.on('exit', (code) => reject(new Error(`policy server exited ${code}: ${banner}`)));
  });
});

afterAll(async () => {
  if (child.exitCode === null) {
    const exited = new Promise((r) => child.once('exit', r));
    child.kill('SIGTERM');
    await exited;
  }
});

/** Sends requests on one connection and reads one `action=` answer for each. */
function ask(requests: Record<string, string>[], socketPath?: string): Promise<string[]> {
  return askPolicy(socketPath ?? port, requests);
}

const rcpt = {
  request: 'smtpd_access_policy',
  protocol_state: 'RCPT',
  protocol_name: 'ESMTP',
  client_address: '203.0.113.9',
  client_name: 'mail.example.net',
  reverse_client_name: 'mail.example.net',
  helo_name: 'mail.example.net',
  sender: 'a@example.net',
  recipient: 'b@example.com',
  recipient_count: '0',
  instance: '1a2b.5f0c1d2e.1',
};

describe('mxguard policy', () => {
  it('prints where it listens and the main.cf line', () => {
    expect(banner).toMatch(
      /check_policy_service \{ inet:127\.0\.0\.1:\d+, timeout=10s, default_action=DUNNO \}/,
    );
  });

  it('answers each request with the chain verdict, in order, many on one connection', async () => {
    const answers = await ask([
      rcpt,
      { ...rcpt, helo_name: 'localhost', instance: 'i2' },
      { ...rcpt, helo_name: 'pc', instance: 'i3' },
      { ...rcpt, recipient: 'x@elsewhere.org', instance: 'i4' },
    ]);
    expect(answers[0]).toBe('DUNNO');
    expect(answers[1]).toMatch(
      /^550 5\.7\.1 <localhost>: Helo command rejected: You are not me \(helo-claims-us\)$/,
    );
    // A single-label HELO is only a doubt by default: the selective greylist delays it.
    expect(answers[2]).toBe('DEFER_IF_PERMIT 4.2.0 Greylisted, please retry in 300 seconds (greylist)');
    expect(answers[3]).toMatch(/^554 5\.7\.1 <x@elsewhere\.org>: Relay access denied/);
  });

  // Postfix writes "unknown" both for no PTR and for a failed lookup, so offline (no lookup of
  // our own) the rDNS checks must not treat it as proof of a missing PTR: no opinion.
  it('"unknown" client names are not taken as a missing PTR when we cannot look it up ourselves', async () => {
    const [a] = await ask([
      {
        ...rcpt,
        client_address: '198.51.100.7',
        client_name: 'unknown',
        reverse_client_name: 'unknown',
        instance: 'i5',
      },
    ]);
    expect(a).toBe('DUNNO');
  });
});

// `mxguard policy --socket PATH --config FILE`: the UNIX socket Postfix names as
// `check_policy_service unix:...`, with the site of a config file.
describe('mxguard policy --socket --config', () => {
  const dir = mkdtempSync(join(tmpdir(), 'mxguard-policy-'));
  const socketPath = join(dir, 'policy.sock');
  const configPath = join(dir, 'mxguard.json');
  let unixChild: ChildProcessWithoutNullStreams;
  let unixBanner = '';

  beforeAll(async () => {
    writeFileSync(
      configPath,
      JSON.stringify({ ourDomains: ['example.org'], ourHosts: ['mx.example.org'], ourNetworks: [] }),
    );
    unixChild = spawn(process.execPath, [
      bin,
      'policy',
      '--offline',
      '--socket',
      socketPath,
      '--config',
      configPath,
    ]);
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`policy server did not start: ${unixBanner}`)), 15_000);
      unixChild.stdout.on('data', (b: Buffer) => {
        unixBanner += b.toString();
        if (unixBanner.includes('main.cf')) {
          clearTimeout(timer);
          resolve();
        }
      });
      unixChild.on('exit', (code) => reject(new Error(`policy server exited ${code}: ${unixBanner}`)));
    });
  });
  afterAll(async () => {
    if (unixChild && unixChild.exitCode === null) {
      const exited = new Promise((r) => unixChild.once('exit', r));
      unixChild.kill('SIGTERM');
      await exited;
    }
    rmSync(dir, { recursive: true, force: true });
  });

  it('listens on the socket and prints it for main.cf', () => {
    expect(unixBanner).toContain(`listening on unix:${socketPath}`);
    expect(unixBanner).toContain(`check_policy_service { unix:${socketPath},`);
  });

  it('judges with the site of the config file', async () => {
    const org = { ...rcpt, recipient: 'b@example.org' };
    const answers = await ask(
      [
        org,
        { ...org, helo_name: 'mx.example.org', instance: 'u2' },
        // example.com is not ours under this config: no longer a HELO that claims to be us.
        { ...org, helo_name: 'mx.example.com', instance: 'u3' },
      ],
      socketPath,
    );
    expect(answers[0]).toBe('DUNNO');
    expect(answers[1]).toMatch(
      /^550 5\.7\.1 <mx\.example\.org>: Helo command rejected: You are not me \(helo-claims-us\)$/,
    );
    expect(answers[2]).toBe('DUNNO');
  });
});
