/**
 * The CLI logger's own path for decision lines (`decision`) writes what pino writes for
 * `info(record, 'decision')`, byte for byte but the time: JSON and text, at every privacy level,
 * with a reason and a trace that carry addresses, and nothing below the log level.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
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
