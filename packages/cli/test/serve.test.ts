import { type ChildProcessWithoutNullStreams, spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import nodemailer from 'nodemailer';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

// The README's main job: `mxguard serve` on loopback, tried with the swaks line it prints.
const bin = fileURLToPath(new URL('../dist/bin.js', import.meta.url));
const dir = mkdtempSync(join(tmpdir(), 'mxguard-serve-'));
const spool = join(dir, 'spool');

interface Served {
  child: ChildProcessWithoutNullStreams;
  banner: string;
  server: string;
}
const started: Served[] = [];

/**
 * `mxguard serve` on a free loopback port, with its banner read up to its last line (the second
 * swaks line): the banner may come in several chunks, split anywhere.
 */
async function serve(args: string[]): Promise<Served> {
  const child = spawn(process.execPath, [bin, 'serve', '--offline', '--listen', '127.0.0.1:0', ...args]);
  const s: Served = { child, banner: '', server: '' };
  started.push(s);
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`gateway did not start: ${s.banner}`)), 45_000);
    child.stdout.on('data', (b: Buffer) => {
      s.banner += b.toString();
      const m = /listening on (127\.0\.0\.1:\d+)/.exec(s.banner);
      if (m && /# refused: helo-claims-us\n/.test(s.banner)) {
        s.server = m[1]!;
        clearTimeout(timer);
        resolve();
      }
    });
    child.on('exit', (code) => reject(new Error(`gateway exited ${code}: ${s.banner}`)));
  });
  return s;
}

function swaksTo(target: string, args: string[]): string {
  const r = spawnSync('swaks', ['--server', target, '--timeout', '10', ...args], {
    encoding: 'utf8',
    timeout: 20_000,
  });
  return `${r.stdout}${r.stderr}`;
}

let banner = '';
let server = '';
const swaks = (args: string[]) => swaksTo(server, args);

beforeAll(async () => {
  ({ banner, server } = await serve(['--spool', spool]));
});

afterAll(async () => {
  for (const { child } of started) {
    if (child.exitCode !== null) continue;
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

describe('mxguard serve with real clients: MAIL refusals, greylisting, nodemailer', () => {
  it('a sender that is not fully qualified is refused at RCPT (delay-reject) with 504 5.5.2', () => {
    const out = swaks([
      '--helo',
      'mail.example.net',
      '--from',
      'a@localhost',
      '--to',
      'postmaster@example.com',
      '--quit-after',
      'RCPT',
    ]);
    expect(out).toMatch(
      /<\*\*\s+504 5\.5\.2 <a@localhost>: Sender address rejected: need fully-qualified address/,
    );
  });

  it('nodemailer delivers through it, and the message is spooled as sent', async () => {
    const [host, port] = server.split(':');
    const transport = nodemailer.createTransport({
      host,
      port: Number(port),
      secure: false,
      ignoreTLS: true,
      name: 'mail.example.net',
    });
    const before = new Set(readdirSync(spool));
    const info = await transport.sendMail({
      envelope: { from: 'sender@example.net', to: ['postmaster@example.com'] },
      raw: 'From: sender@example.net\r\nTo: postmaster@example.com\r\nSubject: via nodemailer\r\n\r\nbody line\r\n',
    });
    transport.close();
    expect(info.response).toMatch(/^250 2\.0\.0 Ok: queued as /);
    const added = readdirSync(spool).filter((f) => f.endsWith('.msg') && !before.has(f));
    expect(added).toHaveLength(1);
    expect(readFileSync(join(spool, added[0]!), 'latin1')).toContain(
      'Subject: via nodemailer\r\n\r\nbody line\r\n',
    );
  });

  it('greylists a new triplet with 450 4.2.0 and accepts the same one retried after the delay', async () => {
    const config = join(dir, 'greylist-all.json');
    // Every client is greylisted (mode "all"), with a delay of one second so the retry is quick.
    writeFileSync(config, JSON.stringify({ options: { greylist: { mode: 'all', delay: 1 } } }));
    const spool2 = join(dir, 'spool-greylist');
    const g = await serve(['--config', config, '--spool', spool2]);
    const send = () =>
      swaksTo(g.server, [
        '--helo',
        'mail.example.net',
        '--from',
        'a@example.net',
        '--to',
        'someone@example.com',
      ]);
    const first = Date.now();
    expect(send()).toMatch(/<\*\*\s+450 4\.2\.0 .*Greylisted, please retry in 1 seconds/);
    expect(readdirSync(spool2).filter((f) => f.endsWith('.msg'))).toHaveLength(0);
    // Retry as an MTA would, after the delay (a retry too early is simply greylisted again).
    await new Promise((r) => setTimeout(r, Math.max(0, first + 1_100 - Date.now())));
    let retry = send();
    for (let i = 0; i < 5 && !/<-\s+250 2\.0\.0/.test(retry); i += 1) {
      await new Promise((r) => setTimeout(r, 500));
      retry = send();
    }
    expect(retry).toMatch(/<-\s+250 2\.0\.0 Ok: queued as /);
    expect(readdirSync(spool2).filter((f) => f.endsWith('.msg'))).toHaveLength(1);
  });
});

describe('mxguard serve refuses a config in which Received headers alone could refuse', () => {
  it('exits 2 naming the weigh and the header points (DESIGN principle 3)', () => {
    const file = join(dir, 'received-decides.json');
    // Measured before: this config made one listed relay in a Received header a 554 5.7.1.
    writeFileSync(
      file,
      JSON.stringify({
        checks: [
          'relay',
          { name: 'received', lists: ['zen.spamhaus.org'], score: 50, maxScore: 100 },
          { name: 'weigh', stage: 'data', reject: 1 },
        ],
      }),
    );
    const r = spawnSync(
      process.execPath,
      [bin, 'serve', '--offline', '--listen', '127.0.0.1:0', '--spool', spool, '--config', file],
      { encoding: 'utf8', timeout: 30_000 },
    );
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(
      /weigh-data: header points alone \(received up to 100\) can reach its threshold 1/,
    );
    expect(r.stdout).not.toMatch(/listening on/);
  });
});
