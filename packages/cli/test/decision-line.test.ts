/**
 * The CLI logger's own path for decision lines (`decision`) writes what pino writes for
 * `info(record, 'decision')`, byte for byte but the time: JSON and text, at every privacy level,
 * with a reason and a trace that carry addresses, and nothing below the log level.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { closeSync, constants, mkdtempSync, openSync, readFileSync, readSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { decisionRecord } from '@mxguard/core';
import { describe, expect, it } from 'vitest';
import { createLog, type LogFormat } from '../src/logging.js';
import { PRIVACY_LEVELS, type Privacy } from '../src/privacy.js';

const dir = mkdtempSync(join(tmpdir(), 'mxguard-decision-line-'));

const record = () =>
  decisionRecord(
    {
      clientAddress: '203.0.113.9',
      stage: 'rcpt',
      helo: 'mail.example.net',
      mailFrom: 'alice@example.net',
      rcptTo: 'bob@example.com',
    },
    {
      action: 'reject',
      reply: { code: 550, enhanced: '5.7.1', text: 'no "quotes" from alice@example.net at 203.0.113.9 (x)' },
      check: 'x',
      reason: 'alice@example.net said \\ and "so"',
      trace: [
        { check: 'a', action: 'next', ms: 0.01 },
        { check: 'x', action: 'reject', ms: 0.02, reason: 'from 203.0.113.9: é ✓' },
      ],
      findings: [],
    },
    'abc.1',
  );

/** The time of a line, JSON or text, replaced so two lines can be compared. */
const untimed = (line: string) => line.replace(/"time":"[^"]+"/, '"time":"T"').replace(/^\S+ /, 'T ');

/** The line `decision` writes and the line pino writes, from one logger (one hash key). */
function both(format: LogFormat, privacy: Privacy, rec: object): [string, string] {
  const file = join(dir, `${format}-${privacy}.log`);
  const cli = createLog({ level: 'info', format, file, privacy, name: 'mxguard/policy', sync: true });
  cli.log.decision?.(rec);
  cli.log.info(rec, 'decision');
  cli.flush();
  const [fast, pino, rest] = readFileSync(file, 'utf8').split(/(?<=\n)/);
  expect(rest).toBeUndefined();
  return [fast ?? '', pino ?? ''];
}

describe('decision lines', () => {
  for (const format of ['json', 'text'] as const) {
    for (const privacy of PRIVACY_LEVELS) {
      it(`${format}, privacy ${privacy}: the same line as pino's`, () => {
        const rec = record();
        rec.conn = 7;
        const [fast, pino] = both(format, privacy, rec);
        expect(fast.endsWith('\n')).toBe(true);
        expect(untimed(fast)).toBe(untimed(pino));
        if (format === 'json') {
          const o = JSON.parse(fast) as Record<string, unknown>;
          expect(o).toMatchObject({ level: 'info', msg: 'decision', event: 'decision', conn: 7, check: 'x' });
          expect(o.client === '203.0.113.9').toBe(privacy === 'full');
        }
      });
    }
  }

  it('writes nothing when the level is above info', () => {
    const file = join(dir, 'warn.log');
    const cli = createLog({ level: 'warn', format: 'json', file, privacy: 'full', name: 'x', sync: true });
    cli.log.decision?.(record());
    cli.log.warn({ a: 1 }, 'kept');
    cli.flush();
    const text = readFileSync(file, 'utf8');
    expect(text).not.toContain('"msg":"decision"');
    expect(text).toContain('"msg":"kept"');
  });
});

describe('log lines at exit', () => {
  // The lines of the last moments before the process ends, held for a batch, are written: when it
  // ends by itself, and when it calls process.exit at once.
  const logging = join(import.meta.dirname, '..', 'dist', 'logging.js');
  for (const [how, end] of [
    ['ending by itself', ''],
    ['calling process.exit', 'process.exit(0);'],
  ] as const) {
    it(`${how}: every line written`, () => {
      const file = join(dir, `exit-${how.replace(/\W/g, '-')}.log`);
      const script = `
        const { createLog } = await import(${JSON.stringify(logging)});
        const { log } = createLog({ level: 'info', format: 'json', file: ${JSON.stringify(file)}, privacy: 'full', name: 'x' });
        // The file is opened in the background: a process ends long after that.
        await new Promise((r) => setTimeout(r, 200));
        for (let i = 0; i < 1000; i++) log.decision({ event: 'decision', n: i });
        log.warn({ n: 1000 }, 'last');
        ${end}`;
      const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8' });
      expect(r.stderr).toBe('');
      expect(r.status).toBe(0);
      const lines = readFileSync(file, 'utf8').trimEnd().split('\n');
      expect(lines).toHaveLength(1001);
      expect(lines.map((l) => (JSON.parse(l) as { n: number }).n)).toEqual(
        Array.from({ length: 1001 }, (_, i) => i),
      );
    });
  }
});

describe('lines in batches of bytes', () => {
  it('writes every line whole and in order: multi-byte text, lines across chunks, a line longer than a chunk', async () => {
    const file = join(dir, 'bytes.log');
    const cli = createLog({ level: 'info', format: 'json', file, privacy: 'full', name: 'x' });
    const texts = ['ascii', 'é ✓ 名前', '𝄞 two units', 'x'.repeat(70_000), `${'ü'.repeat(40_000)}end`];
    const sent: string[] = [];
    // 3,000 lines of 70-80 kB (one of 40,000 characters in 80 kB) and of a few bytes: several 64 kB chunks a batch, and lines that
    // do not fit what is left of one.
    for (let i = 0; i < 3000; i++) {
      const t = texts[i % texts.length] as string;
      sent.push(t);
      if (i % 2 === 0) cli.log.decision?.({ event: 'decision', n: i, t });
      else cli.log.info({ n: i, t }, 'info');
      if (i % 500 === 0) await new Promise((r) => setTimeout(r, 15));
    }
    await new Promise((r) => setTimeout(r, 50));
    cli.flush();
    const lines = readFileSync(file, 'utf8').trimEnd().split('\n');
    expect(lines).toHaveLength(3000);
    const got = lines.map((l) => JSON.parse(l) as { n: number; t: string });
    expect(got.map((o) => o.n)).toEqual(sent.map((_, i) => i));
    expect(got.map((o) => o.t)).toEqual(sent);
  });
});

describe('a log destination that falls behind', () => {
  it('holds at most maxBuffered bytes, drops and counts the rest, and says how many', async () => {
    // A FIFO whose reader does not read: the pipe fills and the destination's write waits, as on a
    // stalled disk. Nothing is lost without a word: every line is written or counted as dropped.
    const fifo = join(dir, 'behind.fifo');
    execFileSync('mkfifo', [fifo]);
    const reader = openSync(fifo, constants.O_RDONLY | constants.O_NONBLOCK);
    const cli = createLog({
      level: 'info',
      format: 'json',
      file: fifo,
      privacy: 'full',
      name: 'x',
      maxBuffered: 256 * 1024,
    });
    await new Promise((r) => setTimeout(r, 200));
    const heapBefore = process.memoryUsage().heapUsed;
    const sent = 20_000;
    for (let i = 0; i < sent; i++) {
      cli.log.decision?.({ event: 'decision', n: i, pad: 'x'.repeat(200) });
      if (i % 500 === 499) await new Promise((r) => setTimeout(r, 12));
    }
    // 20,000 lines of some 300 bytes (6 MB) against a bound of 256 kB.
    expect(process.memoryUsage().heapUsed - heapBefore).toBeLessThan(32 * 1024 * 1024);
    // Now the reader reads: what was held comes out, then the line that counts the dropped ones.
    // Read until a report has come and nothing more for longer than a report's period.
    let text = '';
    const buf = Buffer.alloc(1 << 16);
    const deadline = Date.now() + 20_000;
    let last = Date.now();
    while (Date.now() < deadline && !(text.includes('lines dropped') && Date.now() - last > 1500)) {
      try {
        const n = readSync(reader, buf);
        text += buf.toString('utf8', 0, n);
        last = Date.now();
      } catch {
        await new Promise((r) => setTimeout(r, 5));
      }
    }
    closeSync(reader);
    const lines = text.split('\n').filter((l) => l.startsWith('{'));
    const written = lines.filter((l) => l.includes('"msg":"decision"')).length;
    const reports = lines
      .filter((l) => l.includes('lines dropped'))
      .map((l) => (JSON.parse(l) as { dropped: number }).dropped);
    expect(reports.length).toBeGreaterThan(0);
    const dropped = reports.reduce((a, b) => a + b, 0);
    expect(dropped).toBeGreaterThan(0);
    expect(written).toBeLessThan(sent);
    expect(written + dropped).toBe(sent);
  }, 40_000);
});
