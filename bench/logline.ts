/**
 * The cost of the decision log line: the CLI's logger (createLog: pino, an asynchronous sonic-boom
 * destination, as `mxguard policy --log-file` writes) writing decision lines of the recommended
 * preset's real decisions (`mxguard policy --offline`'s chain: 25 links, eight of them offline
 * stubs) to a file, with the trace the line carries by default (`said`: the steps that said
 * something) and with `--log-trace full`, as JSON and as text. CPU time of the whole process
 * (process.cpuUsage: the write threads too) a line, and bytes a line; it yields to the event loop
 * every fourth line (or every `linesPerTurn`) as a server does between requests. The modes take turns, round by round, so a
 * change in the machine's load falls on all of them; the median round is reported.
 * Run: npx tsx bench/logline.ts [lines=20000] [rounds=5] [linesPerTurn=4]
 * (`linesPerTurn` 1: one line an event-loop turn, as a policy server answering one request a turn.)
 *
 * It imports the built packages (`pnpm build`), as `mxguard` runs them.
 */
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { decisionRecord, type LogTrace, type Session, silentLogger } from '@mxguard/core';
import { createRuntime } from 'mxguard';
import { createLog, type LogFormat } from '../packages/cli/dist/logging.js';

const lines = Number(process.argv[2] ?? 20_000);
const rounds = Number(process.argv[3] ?? 5);
const perTurn = Number(process.argv[4] ?? 4);

const rt = await createRuntime(
  { ourDomains: ['example.com'], ourHosts: ['mx.example.com'] },
  { offline: true, log: silentLogger },
);
const base = {
  rdns: { names: ['mail.example.net'], verified: 'mail.example.net' },
  helo: 'mail.example.net',
  mailFrom: 'alice@example.net',
  rcptTo: 'bob@example.com',
  stage: 'rcpt' as const,
};
// What a policy server mostly sees: ordinary clients (DUNNO, nothing said), one refused, one
// scored (a HELO address literal that is not the client's).
const sessions: Session[] = [
  { ...base, clientAddress: '203.0.113.10' },
  { ...base, clientAddress: '203.0.113.11', mailFrom: 'news@example.org' },
  { ...base, clientAddress: '198.51.100.7', helo: 'localhost' },
  { ...base, clientAddress: '198.51.100.8', helo: '[198.51.100.9]' },
];
const decided = await Promise.all(sessions.map(async (s) => ({ s, d: await rt.policy.chain.evaluate(s) })));
await rt.close();

const dir = mkdtempSync(join(tmpdir(), 'mxguard-logline-'));

/** Writes `lines` decision lines; resolves with CPU µs a line and bytes a line. */
async function round(trace: LogTrace, format: LogFormat, n: number): Promise<{ us: number; bytes: number }> {
  const file = join(dir, `${trace}-${format}-${n}.log`);
  const cli = createLog({ level: 'info', format, file, privacy: 'full', name: 'mxguard/policy' });
  const options = { trace };
  const start = process.cpuUsage();
  for (let i = 0; i < lines; i++) {
    const { s, d } = decided[i % decided.length] as (typeof decided)[number];
    cli.log.info({ ...decisionRecord(s, d, `a1b2.${i}`, options), conn: i & 7 }, 'decision');
    if (i % perTurn === perTurn - 1) await new Promise((r) => setImmediate(r));
  }
  cli.flush();
  const used = process.cpuUsage(start);
  const bytes = statSync(file).size;
  rmSync(file);
  return { us: (used.user + used.system) / lines, bytes: bytes / lines };
}

const modes: [LogTrace, LogFormat][] = [
  ['said', 'json'],
  ['full', 'json'],
  ['said', 'text'],
  ['full', 'text'],
];
const results = new Map<string, { us: number; bytes: number }[]>();
// A warm-up round of each, not counted.
for (const [t, f] of modes) await round(t, f, -1);
for (let r = 0; r < rounds; r++) {
  for (const [t, f] of modes) {
    const key = `${t} ${f}`;
    const list = results.get(key) ?? [];
    list.push(await round(t, f, r));
    results.set(key, list);
  }
}
rmSync(dir, { recursive: true, force: true });

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] as number;
console.log(
  `${lines} lines a round, ${rounds} rounds, ${perTurn} lines an event-loop turn, node ${process.version}`,
);
console.log('trace format   CPU µs a line (median, min-max)   bytes a line');
for (const [key, list] of results) {
  const us = list.map((x) => x.us);
  console.log(
    `${key.padEnd(14)} ${median(us).toFixed(1).padStart(6)} (${Math.min(...us).toFixed(1)}-${Math.max(...us).toFixed(1)})${' '.repeat(18)}${Math.round(median(list.map((x) => x.bytes)))}`,
  );
}
