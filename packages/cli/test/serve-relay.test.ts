/**
 * `mxguard serve --relay smtp://...` in front of a real Postfix 3.7 on loopback: the printed swaks
 * line delivers into Postfix's mailbox, an unknown user is refused at RCPT, and after `kill -9` of
 * mxguard mid-run every message a client saw acknowledged is in Postfix (mailbox or queue).
 */
import { type ChildProcessWithoutNullStreams, spawn, spawnSync } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import nodemailer from 'nodemailer';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort } from '../../../testing/net.js';
import {
  maildirMessages,
  type PostfixInstance,
  postfixAvailable,
  startPostfix,
} from '../../../testing/postfix-instance.js';
import { until } from '../../../testing/wait.js';

const bin = fileURLToPath(new URL('../dist/bin.js', import.meta.url));

interface Served {
  child: ChildProcessWithoutNullStreams;
  banner: string;
  server: string;
  port: number;
}

async function serve(args: string[]): Promise<Served> {
  const child = spawn(process.execPath, [bin, 'serve', '--offline', '--listen', '127.0.0.1:0', ...args]);
  const s: Served = { child, banner: '', server: '', port: 0 };
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`gateway did not start: ${s.banner}`)), 45_000);
    child.stdout.on('data', (b: Buffer) => {
      s.banner += b.toString();
      const m = /listening on (127\.0\.0\.1:(\d+))/.exec(s.banner);
      // Up to the banner's last line, the second swaks line (read below): it may come in a chunk
      // of its own.
      if (m && /# refused: helo-claims-us\n/.test(s.banner)) {
        s.server = m[1] as string;
        s.port = Number(m[2]);
        clearTimeout(timer);
        resolve();
      }
    });
    child.stderr.resume();
    child.on('exit', (code) => reject(new Error(`gateway exited ${code}: ${s.banner}`)));
  });
  return s;
}

async function stop(s: Served | undefined): Promise<void> {
  if (!s || s.child.exitCode !== null || s.child.signalCode !== null) return;
  const exited = new Promise((r) => s.child.once('exit', r));
  s.child.kill('SIGTERM');
  await exited;
}

describe.skipIf(!postfixAvailable)('mxguard serve --relay in front of a real Postfix', () => {
  let postfix: PostfixInstance;
  let served: Served;
  let smtpPort: number;

  beforeAll(async () => {
    smtpPort = await freePort();
    postfix = await startPostfix({
      mainCf: 'virtual_mailbox_maps = inline:{ postmaster@example.com=pm/, bob@example.com=bob/ }\n',
      smtpd: { [smtpPort]: '' },
    });
    served = await serve(['--relay', `smtp://127.0.0.1:${smtpPort}`]);
  }, 90_000);

  afterAll(async () => {
    await stop(served);
    await postfix?.close();
  });

  it('says where mail goes, and its swaks line delivers into Postfix with our Received header', async () => {
    expect(served.banner).toContain(`relay: smtp://127.0.0.1:${smtpPort}`);
    const line = /^\s+(swaks --server \S+ .*postmaster@example\.com)$/m.exec(served.banner)?.[1];
    expect(line).toBeDefined();
    const r = spawnSync('swaks', [...(line as string).split(/\s+/).slice(1), '--timeout', '20'], {
      encoding: 'utf8',
      timeout: 30_000,
    });
    expect(`${r.stdout}`).toMatch(/<- +250 2\.0\.0 Ok: queued as [0-9A-Z]+/);
    const file = await until(async () => (await maildirMessages(postfix))[0]);
    const text = await readFile(file, 'utf8');
    expect(text).toMatch(
      /\nReceived: from mail\.example\.net \(unknown \[127\.0\.0\.1\]\)\n\tby \S+ \(mxguard\) with ESMTP/,
    );
  });

  it('refuses at RCPT a user Postfix does not know', () => {
    const r = spawnSync(
      'swaks',
      [
        '--server',
        served.server,
        '--helo',
        'mail.example.net',
        '--from',
        'alice@example.net',
        '--to',
        'nobody@example.com',
        '--quit-after',
        'RCPT',
        '--timeout',
        '20',
      ],
      { encoding: 'utf8', timeout: 30_000 },
    );
    expect(`${r.stdout}`).toMatch(
      /<\*\* +550 5\.1\.1 <nobody@example\.com>: Recipient address rejected: User unknown in virtual mailbox table\n/,
    );
  });

  it('kill -9 mid-run: every acknowledged message is in Postfix, no other got a 250', async () => {
    const victim = await serve(['--relay', `smtp://127.0.0.1:${smtpPort}`]);
    const transport = nodemailer.createTransport({
      host: '127.0.0.1',
      port: victim.port,
      pool: true,
      maxConnections: 4,
      ignoreTLS: true,
      name: 'mail.example.net',
    });
    const total = 60;
    const acked: string[] = [];
    let failed = 0;
    let sent = 0;
    await Promise.all(
      Array.from({ length: 4 }, async () => {
        for (;;) {
          const i = sent++;
          if (i >= total) return;
          if (i === 25) victim.child.kill('SIGKILL');
          const id = `kill9-${i}`;
          try {
            await transport.sendMail({
              envelope: { from: 'alice@example.net', to: ['bob@example.com'] },
              raw: `From: alice@example.net\r\nTo: bob@example.com\r\nMessage-ID: <${id}@example.net>\r\nDate: Tue, 01 Dec 2026 15:00:00 +0000\r\nSubject: ${id}\r\n\r\nbody ${id}\r\n`,
            });
            acked.push(id);
          } catch {
            failed++;
          }
        }
      }),
    );
    transport.close();
    expect(acked.length + failed).toBe(total);
    expect(acked.length).toBeGreaterThan(0);
    expect(failed).toBeGreaterThan(0);
    const texts = await until(async () => {
      const files = await maildirMessages(postfix);
      const all = (await Promise.all(files.map((f) => readFile(f, 'utf8')))).join('\n');
      return acked.every((id) => all.includes(`<${id}@example.net>`)) ? all : undefined;
    }, 60_000);
    for (const id of acked) expect(texts).toContain(`<${id}@example.net>`);
  }, 120_000);
});
