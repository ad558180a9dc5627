/**
 * The status page's cost on the event loop that also answers SMTP: recording a decision on the
 * board, and rendering the page with the board full (typical decisions, and the worst case: every
 * field at its clip length with 40 trace steps).
 * Run: npx tsx bench/status.ts
 */
import { cpus } from 'node:os';
import { Redactor } from '../packages/cli/src/privacy.js';
import { StatusBoard } from '../packages/cli/src/status/board.js';
import { renderPage } from '../packages/cli/src/status/page.js';
import { type Decision, reply, type Session } from '../packages/core/src/index.js';

const clock = { now: () => Date.UTC(2026, 11, 1, 14, 0, 0) };
const session = (i: number, big: boolean): Session =>
  ({
    clientAddress: `198.51.${(i >> 8) & 255}.${i & 255}`,
    stage: 'rcpt',
    helo: big ? 'h'.repeat(300) : 'mail.example.net',
    mailFrom: big ? `${'a'.repeat(300)}@example.net` : `sender${i}@example.net`,
    rcptTo: `user${i % 50}@example.com`,
  }) as Session;
const decision = (big: boolean): Decision => ({
  action: 'reject',
  reply: reply(550, '5.7.1', big ? 'r'.repeat(600) : 'HELO claims to be us'),
  check: 'helo-claims-us',
  reason: big ? 'why '.repeat(200) : 'HELO claims our name',
  trace: Array.from({ length: big ? 40 : 6 }, (_, k) => ({
    check: `check-${k}`,
    action: 'next' as const,
    reason: big ? 'x'.repeat(300) : 'fine',
    ms: 0.1,
  })),
  findings: [],
});

function run(label: string, big: boolean, privacy: 'full' | 'hash'): void {
  const board = new StatusBoard({ clock, redactor: new Redactor(privacy) });
  const d = decision(big);
  const n = 20_000;
  const sessions = Array.from({ length: n }, (_, i) => session(i, big));
  // Warm-up, then measured.
  for (let i = 0; i < n; i++) board.record(sessions[i] as Session, d, i);
  let started = performance.now();
  for (let i = 0; i < n; i++) board.record(sessions[i] as Session, d, i);
  const recordUs = ((performance.now() - started) * 1000) / n;
  const renders = 20;
  let bytes = 0;
  renderPage(board, { title: 'mxguard serve', now: clock.now() }, '');
  started = performance.now();
  for (let i = 0; i < renders; i++)
    bytes = renderPage(board, { title: 'mxguard serve', now: clock.now() }, '').length;
  const renderMs = (performance.now() - started) / renders;
  started = performance.now();
  for (let i = 0; i < renders; i++)
    renderPage(board, { title: 'mxguard serve', now: clock.now() }, 'sender7@example.net');
  const searchMs = (performance.now() - started) / renders;
  console.log(
    `${label} (${privacy}): record ${recordUs.toFixed(1)} µs a decision; board ${board.latest().length} entries, ${(board.bytes / 1024).toFixed(0)} KiB; page ${(bytes / 1024).toFixed(0)} KiB rendered in ${renderMs.toFixed(1)} ms; with a search ${searchMs.toFixed(1)} ms`,
  );
}

console.log(`node ${process.version}, ${cpus()[0]?.model ?? 'unknown CPU'}`);
run('typical decisions', false, 'full');
run('typical decisions', false, 'hash');
run('worst case (every field at its clip length, 40 steps)', true, 'full');
