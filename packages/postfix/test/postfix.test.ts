/**
 * A real Postfix (Debian's postfix 3.7) asks the policy server through check_policy_service while
 * swaks talks SMTP to it: what swaks reads must follow mxguard's verdicts. Postfix runs as a
 * private instance (its own config, queue and data directories under a temp dir, smtpd on loopback
 * ports only, nothing delivered: mail is never accepted past RCPT by these tests, and every
 * transport is `error` anyway).
 */
import { type ChildProcess, execFile, execFileSync, spawn } from 'node:child_process';
import { closeSync, existsSync, openSync, readFileSync } from 'node:fs';
import { chmod, chown, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type Check, chain, heloFqdn, heloSyntax, type Session } from '@mxguard/core';
import { type PolicyServer, startPolicyServer } from '@mxguard/postfix';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort } from '../../../testing/net.js';
import { byRecipient, memoryLogger } from './helpers.js';

const POSTFIX = '/usr/sbin/postfix';
const SWAKS = '/usr/bin/swaks';
const isRoot = process.getuid?.() === 0;
const available = existsSync(POSTFIX) && existsSync(SWAKS) && isRoot;

function accepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect(port, '127.0.0.1');
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

/** Runs swaks up to RCPT and returns its transcript (swaks exits non-zero on a refusal). */
function swaks(port: number, to: string, helo = 'mail.example.net'): Promise<string> {
  const args = [
    '--server',
    `127.0.0.1:${port}`,
    '--from',
    'alice@example.net',
    '--to',
    to,
    '--helo',
    helo,
    '--quit-after',
    'RCPT',
    '--timeout',
    '20',
  ];
  return new Promise((resolve) => {
    execFile(SWAKS, args, { timeout: 30_000 }, (_err, stdout, stderr) => resolve(`${stdout}${stderr}`));
  });
}

/** The server's reply to RCPT TO, as swaks printed it. */
function rcptReply(transcript: string): string {
  const lines = transcript.split('\n');
  const i = lines.findIndex((l) => l.includes('-> RCPT TO:'));
  const r = lines[i + 1] ?? '';
  return r.replace(/^<(\*\*|-) +/, '');
}

describe.skipIf(!available)('a real Postfix asking mxguard (check_policy_service)', () => {
  let dir: string;
  let policy: PolicyServer;
  let master: ChildProcess | undefined;
  let logPath = '';
  const maillog = () => (logPath && existsSync(logPath) ? readFileSync(logPath, 'utf8') : '');
  let smtpPort: number;
  let deadDunnoPort: number;
  let deadDefaultPort: number;
  let heloInvalidPort: number;
  let heloFqdnPort: number;
  const seen: Session[] = [];

  beforeAll(async () => {
    const record = {
      name: 'record',
      stage: 'connect' as const,
      run(s: Session) {
        seen.push(s);
        return { action: 'next' as const };
      },
    };
    policy = await startPolicyServer({
      listen: { host: '127.0.0.1', port: 0 },
      chain: chain([record, byRecipient]),
      log: memoryLogger(),
    });
    const policyPort = (policy.address as { port: number }).port;
    const deadPolicyPort = await freePort(); // nothing listens there
    smtpPort = await freePort();
    deadDunnoPort = await freePort();
    deadDefaultPort = await freePort();
    heloInvalidPort = await freePort();
    heloFqdnPort = await freePort();

    dir = await mkdtemp(join(tmpdir(), 'mxguard-postfix-'));
    // Postfix daemons drop to the postfix user: they must reach the queue, and own the data dir.
    await chmod(dir, 0o755);
    const conf = join(dir, 'conf');
    const data = join(dir, 'data');
    await mkdir(conf);
    await mkdir(join(dir, 'queue'));
    await mkdir(data);
    const uid = Number(execFileSync('id', ['-u', 'postfix']).toString().trim());
    const gid = Number(execFileSync('id', ['-g', 'postfix']).toString().trim());
    await chown(data, uid, gid);
    await writeFile(
      join(conf, 'main.cf'),
      `# A private Postfix for mxguard's tests: loopback only, nothing delivered.
compatibility_level = 3.6
queue_directory = ${dir}/queue
data_directory = ${data}
mail_owner = postfix
setgid_group = postdrop
myhostname = mx.example.com
mydomain = example.com
mydestination = example.com
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
maillog_file = /dev/stdout
default_transport = error
# Local mail is discarded (an error transport would make smtpd refuse it at RCPT: 550 5.1.1).
local_transport = discard
alias_maps =
alias_database =
# Every local part exists: the policy server alone decides at RCPT.
local_recipient_maps =
smtp_dns_support_level = disabled
smtpd_policy_service_retry_delay = 1s
smtpd_recipient_restrictions = check_policy_service inet:127.0.0.1:${policyPort}, permit
mxguard_dead_dunno = check_policy_service { inet:127.0.0.1:${deadPolicyPort}, default_action=DUNNO }, permit
mxguard_dead_default = check_policy_service inet:127.0.0.1:${deadPolicyPort}, permit
# One HELO restriction a service, each measured against the check that follows it.
mxguard_helo_invalid = reject_invalid_helo_hostname
mxguard_helo_fqdn = reject_non_fqdn_helo_hostname
`,
    );
    const svc = (name: string, type: string, priv: string, wakeup: string, maxproc: string, cmd: string) =>
      `${name} ${type} ${priv} - n ${wakeup} ${maxproc} ${cmd}`;
    await writeFile(
      join(conf, 'master.cf'),
      [
        svc(`127.0.0.1:${smtpPort}`, 'inet', 'n', '-', '-', 'smtpd'),
        svc(
          `127.0.0.1:${deadDunnoPort}`,
          'inet',
          'n',
          '-',
          '-',
          'smtpd -o smtpd_recipient_restrictions=$mxguard_dead_dunno',
        ),
        svc(
          `127.0.0.1:${deadDefaultPort}`,
          'inet',
          'n',
          '-',
          '-',
          'smtpd -o smtpd_recipient_restrictions=$mxguard_dead_default',
        ),
        svc(
          `127.0.0.1:${heloInvalidPort}`,
          'inet',
          'n',
          '-',
          '-',
          'smtpd -o smtpd_helo_restrictions=$mxguard_helo_invalid -o smtpd_recipient_restrictions=permit',
        ),
        svc(
          `127.0.0.1:${heloFqdnPort}`,
          'inet',
          'n',
          '-',
          '-',
          'smtpd -o smtpd_helo_restrictions=$mxguard_helo_fqdn -o smtpd_recipient_restrictions=permit',
        ),
        svc('pickup', 'unix', 'n', '60', '1', 'pickup'),
        svc('cleanup', 'unix', 'n', '-', '0', 'cleanup'),
        svc('qmgr', 'unix', 'n', '300', '1', 'qmgr'),
        svc('rewrite', 'unix', '-', '-', '-', 'trivial-rewrite'),
        svc('bounce', 'unix', '-', '-', '0', 'bounce'),
        svc('defer', 'unix', '-', '-', '0', 'bounce'),
        svc('trace', 'unix', '-', '-', '0', 'bounce'),
        svc('verify', 'unix', '-', '-', '1', 'verify'),
        svc('proxymap', 'unix', '-', '-', '-', 'proxymap'),
        svc('error', 'unix', '-', '-', '-', 'error'),
        svc('retry', 'unix', '-', '-', '-', 'error'),
        svc('discard', 'unix', '-', '-', '-', 'discard'),
        svc('anvil', 'unix', '-', '-', '1', 'anvil'),
        svc('scache', 'unix', '-', '-', '1', 'scache'),
        svc('postlog', 'unix-dgram', 'n', '-', '1', 'postlogd'),
        '',
      ].join('\n'),
    );
    // start-fg keeps master in the foreground, as our child: it cannot outlive the test run unseen.
    // Its stdout must be a file: Postfix opens /dev/stdout by name, which fails on the socket pair
    // node would give a piped child (ENXIO), and Postfix then exits 1 without a word.
    logPath = join(dir, 'maillog');
    const fd = openSync(logPath, 'a');
    master = spawn(POSTFIX, ['-c', conf, 'start-fg'], { stdio: ['ignore', fd, fd] });
    closeSync(fd);
    const exited = new Promise<void>((resolve) => master?.once('exit', () => resolve()));
    for (let i = 0; i < 200; i++) {
      const ports = [smtpPort, deadDunnoPort, deadDefaultPort, heloInvalidPort, heloFqdnPort];
      if ((await Promise.all(ports.map(accepts))).every(Boolean)) return;
      const done = await Promise.race([
        exited.then(() => true),
        new Promise<false>((r) => setTimeout(() => r(false), 100)),
      ]);
      if (done) break;
    }
    throw new Error(`postfix did not start:\n${maillog()}`);
  });

  afterAll(async () => {
    if (dir && master && master.exitCode === null) {
      const exited = new Promise<void>((resolve) => master?.once('exit', () => resolve()));
      try {
        execFileSync(POSTFIX, ['-c', join(dir, 'conf'), 'stop'], { stdio: 'ignore' });
      } catch {
        // master is killed below
      }
      const stopped = await Promise.race([
        exited.then(() => true),
        new Promise<false>((r) => setTimeout(() => r(false), 15_000)),
      ]);
      if (!stopped) master.kill('SIGKILL');
    }
    await policy?.close();
    if (dir && !process.env.KEEP) await rm(dir, { recursive: true, force: true });
  });

  it('rejects at RCPT with our code, enhanced code and text', async () => {
    const reply = rcptReply(await swaks(smtpPort, 'reject@example.com'));
    expect(reply).toBe('550 5.7.1 <reject@example.com>: Recipient address rejected: go away (by-recipient)');
    expect(maillog()).toMatch(/NOQUEUE: reject: RCPT from .*550 5\.7\.1 <reject@example\.com>/);
  });

  it('defers with our 4xx code', async () => {
    expect(rcptReply(await swaks(smtpPort, 'defer@example.com'))).toBe(
      '451 4.7.1 <defer@example.com>: Recipient address rejected: come back later (by-recipient)',
    );
  });

  it('DEFER_IF_PERMIT: Postfix defers (its 450, our 4.7.1) because the list ends in permit', async () => {
    expect(rcptReply(await swaks(smtpPort, 'dip@example.com'))).toBe(
      '450 4.7.1 <dip@example.com>: Recipient address rejected: maybe later (by-recipient)',
    );
  });

  it('accepts at RCPT on DUNNO and on OK', async () => {
    expect(rcptReply(await swaks(smtpPort, 'bob@example.com'))).toMatch(/^250 2\.1\.5 Ok/);
    expect(rcptReply(await swaks(smtpPort, 'ok@example.com'))).toMatch(/^250 2\.1\.5 Ok/);
  });

  it('hands the chain what Postfix knows about the client and the envelope', async () => {
    seen.length = 0;
    await swaks(smtpPort, 'bob@example.com', 'helo.example.org');
    const s = seen.at(-1);
    expect(s).toMatchObject({
      clientAddress: '127.0.0.1',
      stage: 'rcpt',
      helo: 'helo.example.org',
      mailFrom: 'alice@example.net',
      rcptTo: 'bob@example.com',
      tls: false,
    });
    expect(typeof s?.flags?.postfixInstance).toBe('string');
  });

  /**
   * HELO conformance: each HELO through Postfix 3.7's reject_invalid_helo_hostname and
   * reject_non_fqdn_helo_hostname (smtputf8_enable = yes, its default) and through helo-syntax and
   * helo-fqdn: the same reply, code, enhanced code and text, or a deliberate difference documented
   * in docs/checks/helo.md. With `utf8: false` (and `bareIp: 'fail'` for helo-fqdn alone) mxguard
   * gives Postfix's answer to every HELO of the table.
   */
  it('HELO names through Postfix 3.7 and through helo-syntax and helo-fqdn', async () => {
    const ctx = { clock: { now: () => 0 }, log: memoryLogger(), findings: [] };
    const said = async (c: Check, helo: string) => {
      const v = await c.run({ clientAddress: '127.0.0.1', helo, stage: 'helo' }, ctx);
      return v.action === 'next' ? '250' : `${v.reply.code} ${v.reply.enhanced} ${v.reply.text}`;
    };
    const syntax = heloSyntax();
    const syntaxStrict = heloSyntax({ utf8: false });
    // Postfix's reject one option away: helo-fqdn only doubts (greylists) by default.
    const fqdn = heloFqdn({ action: 'reject' });
    const fqdnStrict = heloFqdn({ action: 'reject', bareIp: 'fail', utf8: false });
    const differences: string[] = [];
    for (const helo of HELO_TABLE) {
      const postfixInvalid = await heloThrough(heloInvalidPort, helo);
      const postfixFqdn = await heloThrough(heloFqdnPort, helo);
      expect(await said(syntaxStrict, helo), helo).toBe(postfixInvalid);
      expect(await said(fqdnStrict, helo), helo).toBe(postfixFqdn);
      if ((await said(syntax, helo)) !== postfixInvalid) differences.push(`helo-syntax ${helo}`);
      if ((await said(fqdn, helo)) !== postfixFqdn) differences.push(`helo-fqdn ${helo}`);
    }
    // The deliberate differences of the defaults (docs/checks/helo.md): a valid IDN proves nothing
    // false, and a bare IP is helo-bare-ip's case (which gives Postfix's 504).
    expect(differences).toEqual([
      'helo-syntax bücher.example',
      'helo-fqdn bücher.example',
      'helo-fqdn 192.0.2.1',
      'helo-fqdn 0.255.255.255',
      'helo-fqdn 0.0.0.0',
      'helo-fqdn 01.2.3.4',
      'helo-fqdn ::1',
      'helo-fqdn 2001:db8::1',
      'helo-fqdn ::ffff:0.1.2.3',
    ]);
  });

  it('with the policy server down: 451 4.3.5 by default, the mail passes with default_action=DUNNO', async () => {
    expect(rcptReply(await swaks(deadDefaultPort, 'reject@example.com'))).toBe(
      '451 4.3.5 <reject@example.com>: Recipient address rejected: Server configuration problem',
    );
    expect(rcptReply(await swaks(deadDunnoPort, 'reject@example.com'))).toMatch(/^250 2\.1\.5 Ok/);
  });
});

/** One SMTP conversation up to RCPT on a raw socket: the first refusal (EHLO, MAIL or RCPT), or 250. */
function heloThrough(port: number, helo: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = connect(port, '127.0.0.1');
    const steps = [`EHLO ${helo}`, 'MAIL FROM:<alice@example.net>', 'RCPT TO:<bob@example.com>'];
    let buf = '';
    let step = -1; // -1: the greeting
    const done = (r: string) => {
      s.end('QUIT\r\n');
      s.destroy();
      resolve(r);
    };
    s.setTimeout(20_000, () => {
      s.destroy();
      reject(new Error(`no answer to HELO ${helo}`));
    });
    s.on('error', reject);
    s.on('data', (d: Buffer) => {
      buf += d.toString('utf8');
      for (;;) {
        const m = /^(\d{3})([ -])(.*)\r\n/.exec(buf);
        if (!m) return;
        buf = buf.slice(m[0].length);
        if (m[2] === '-') continue; // a multi-line reply goes on
        const line = `${m[1]} ${m[3]}`;
        if (!line.startsWith('2')) return done(line);
        step++;
        if (step === steps.length) return done('250');
        s.write(Buffer.from(`${steps[step]}\r\n`, 'utf8'));
      }
    });
  });
}

/** HELO arguments measured against the real Postfix: names, literals, bare addresses, edge cases. */
const HELO_TABLE = [
  'mail.example.net',
  'mx.example.com.',
  'tater',
  'localhost.',
  'bücher.example',
  'xn--bcher-kva.example',
  'exa_mple.net',
  '-bad.example',
  'bad-.example',
  'a..b.example',
  '12345',
  '1.2.3',
  '192.0.2.1',
  '0.255.255.255',
  '0.0.0.0',
  '01.2.3.4',
  '::1',
  '2001:db8::1',
  '::ffff:0.1.2.3',
  '[192.0.2.1]',
  '[0.1.2.3]',
  '[0.0.0.0]',
  '[300.1.1.1]',
  '[::1]',
  '[IPv6:::1]',
  '[ipv6:2001:db8::1]',
  '[IPv6:1.2.3.4]',
  '[]',
];
