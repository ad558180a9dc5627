/**
 * `mxguard replay` on a log written by a real Postfix 3.7 after sessions sent with swaks: the
 * RCPT decisions are rebuilt (with HELO when Postfix logs permits, without it from a stock log's
 * queue lines), judged with a config, and the disagreements listed both ways.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { decisionRecord, silentLogger } from '@mxguard/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort } from '../../../testing/net.js';
import { type PostfixInstance, postfixAvailable, startPostfix } from '../../../testing/postfix-instance.js';
import {
  createRuntime,
  formatReport,
  type LoggedRcpt,
  parseDecisionLog,
  parsePostfixLog,
  type ReplayReport,
  replay,
} from '../src/index.js';

const YEAR = new Date().getUTCFullYear();

async function replayWith(rcpts: readonly LoggedRcpt[]): Promise<ReplayReport> {
  const rt = await createRuntime(
    { ourDomains: ['example.com'], ourHosts: ['mx.example.com'] },
    { offline: true, log: silentLogger },
  );
  try {
    return await replay(rcpts, rt);
  } finally {
    await rt.close();
  }
}

describe.skipIf(!postfixAvailable)('mxguard replay on a real Postfix log', () => {
  let postfix: PostfixInstance;
  let log = '';

  beforeAll(async () => {
    const port = await freePort();
    postfix = await startPostfix({
      mainCf: `virtual_mailbox_maps = inline:{ bob@example.com=bob/ }
# The line that makes Postfix log the HELO of accepted mail:
smtpd_log_access_permit_actions = static:all
smtpd_recipient_restrictions = reject_non_fqdn_helo_hostname, reject_unlisted_recipient, permit
`,
      smtpd: { [port]: '' },
    });
    const swaks = (helo: string, to: string) =>
      spawnSync(
        'swaks',
        [
          '--server',
          `127.0.0.1:${port}`,
          '--helo',
          helo,
          '--from',
          'alice@example.net',
          '--to',
          to,
          '--timeout',
          '10',
        ],
        { encoding: 'utf8', timeout: 20_000 },
      );
    swaks('mail.example.net', 'bob@example.com'); // accepted by both
    swaks('tater', 'bob@example.com'); // Postfix: 504 (non-FQDN HELO)
    swaks('mx.example.com', 'bob@example.com'); // Postfix accepts; it claims to be us
    swaks('mail.example.net', 'nobody@example.com'); // Postfix: 550 5.1.1 unknown user
    // Wait until the accepted messages are delivered (their queue lines are logged).
    for (let i = 0; i < 100 && (postfix.maillog().match(/status=sent/g) ?? []).length < 2; i++)
      await new Promise((r) => setTimeout(r, 100));
    log = postfix.maillog();
  }, 90_000);

  afterAll(async () => {
    await postfix?.close();
  });

  it('rebuilds each RCPT with its time, client, HELO, envelope and Postfix’s answer', () => {
    const rcpts = parsePostfixLog(log, { file: 'maillog', year: YEAR });
    expect(rcpts.map((r) => [r.helo, r.to, r.logged])).toEqual([
      ['mail.example.net', 'bob@example.com', 'accept'],
      ['tater', 'bob@example.com', 'reject'],
      ['mx.example.com', 'bob@example.com', 'accept'],
      ['mail.example.net', 'nobody@example.com', 'reject'],
    ]);
    const tater = rcpts[1] as LoggedRcpt;
    expect(tater).toMatchObject({ client: '127.0.0.1', name: 'localhost', from: 'alice@example.net' });
    expect(tater.reply).toMatch(/^504 5\.5\.2 <tater>: Helo command rejected/);
    expect(tater.source).toMatch(/^maillog:\d+$/);
    expect(Math.abs(tater.time - Date.now() / 1000)).toBeLessThan(600);
  });

  it('lists what the policy refuses that Postfix accepted, and the reverse', async () => {
    const report = await replayWith(parsePostfixLog(log, { year: YEAR }));
    expect(report.decisions).toBe(4);
    expect(report.withoutHelo).toBe(0);
    expect(report.newlyRefused.map((r) => [r.rcpt.helo, r.verdict.check])).toEqual([
      ['mx.example.com', 'helo-claims-us'],
    ]);
    expect(report.newlyAccepted.map((r) => r.rcpt.to)).toEqual(['nobody@example.com']);
    expect(report.byCheck['helo-claims-us']?.reject).toBe(1);
    const text = formatReport(report);
    expect(text).toContain('replayed 4 RCPT decisions');
    expect(text).toMatch(
      /accepted in the log, refused by this policy \(review for honest senders\): 1\n {2}\S+ 127\.0\.0\.1 \(localhost\) helo=<mx\.example\.com>/,
    );
    expect(text).toMatch(
      /refused in the log, accepted by this policy: 1\n {2}.*to=<nobody@example\.com>: was 550 5\.1\.1/,
    );
  });

  it('mxguard replay FILE --config: the same report from the command line, and JSON with --format json', () => {
    const bin = fileURLToPath(new URL('../dist/bin.js', import.meta.url));
    const dir = mkdtempSync(join(tmpdir(), 'mxguard-replay-'));
    try {
      const logFile = join(dir, 'maillog');
      const configFile = join(dir, 'config.json');
      writeFileSync(logFile, log);
      writeFileSync(
        configFile,
        JSON.stringify({ ourDomains: ['example.com'], ourHosts: ['mx.example.com'] }),
      );
      const run = (extra: string[]) =>
        spawnSync(process.execPath, [bin, 'replay', '--offline', '--config', configFile, ...extra, logFile], {
          encoding: 'utf8',
          timeout: 60_000,
        });
      const text = run([]);
      expect(text.status).toBe(0);
      expect(text.stdout).toContain('replayed 4 RCPT decisions');
      expect(text.stdout).toMatch(/helo-claims-us +reject 1/);
      const json = run(['--format', 'json']);
      expect(json.status).toBe(0);
      const report = JSON.parse(json.stdout) as ReplayReport;
      expect(report.newlyRefused).toHaveLength(1);
      expect(report.newlyAccepted).toHaveLength(1);
      const missing = spawnSync(process.execPath, [bin, 'replay', '--offline', join(dir, 'nope')], {
        encoding: 'utf8',
        timeout: 60_000,
      });
      expect(missing.status).toBe(2);
      expect(missing.stderr).toContain('cannot read');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('a stock log (no permit lines): accepted mail from the queue lines, without HELO, and says so', async () => {
    const stock = log
      .split('\n')
      .filter((l) => !l.includes(': permit: '))
      .join('\n');
    const rcpts = parsePostfixLog(stock, { year: YEAR });
    expect(rcpts.filter((r) => r.logged === 'accept').map((r) => [r.to, r.helo])).toEqual([
      ['bob@example.com', undefined],
      ['bob@example.com', undefined],
    ]);
    const report = await replayWith(rcpts);
    expect(report.withoutHelo).toBe(2);
    expect(formatReport(report)).toContain('smtpd_log_access_permit_actions = static:all');
  });
});

describe('parseDecisionLog', () => {
  it('reads mxguard’s own decision lines at RCPT', () => {
    const line = JSON.stringify({
      level: 'info',
      time: 1_764_600_000_000,
      ...decisionRecord(
        {
          clientAddress: '192.0.2.7',
          helo: 'x.example',
          mailFrom: 'a@b.example',
          rcptTo: 'u@example.com',
          stage: 'rcpt',
        },
        {
          action: 'reject',
          reply: { code: 550, enhanced: '5.7.1', text: 'no' },
          check: 'c',
          reason: 'r',
          trace: [],
          findings: [],
        },
      ),
    });
    const other = JSON.stringify({ level: 'info', event: 'listening' });
    expect(parseDecisionLog(`${other}\n${line}\nnot json\n`, { file: 'd.log' })).toEqual([
      {
        time: 1_764_600_000,
        client: '192.0.2.7',
        helo: 'x.example',
        from: 'a@b.example',
        to: 'u@example.com',
        logged: 'reject',
        reply: '550 5.7.1 no',
        source: 'd.log:2',
      },
    ]);
  });
});
