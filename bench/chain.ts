/**
 * A full offline recommended chain (every pure check, the rDNS classifier and the in-memory
 * greylist, in the preset's order) judged at RCPT, sessions per second.
 * Run: npx tsx bench/chain.ts [rounds=5000]
 *
 * It imports the built packages (`pnpm build`, run by `pnpm install`), as `mxguard` and every
 * user runs them: the code tsc emits, not tsx's transform of the sources, which wraps every
 * closure in a naming helper that costs about a fifth of the time on this hot path.
 */
import { bindFactories, ManualClock, PROVIDED_CHECKS, recommended, type Session } from '@mxguard/core';
import { greylistFactories, memoryStore } from '@mxguard/greylist';

const clock = new ManualClock(1_700_000_000_000);
const store = memoryStore({ clock });
const { chain } = recommended({
  ourDomains: ['example.com'],
  ourHosts: ['mx.example.com'],
  provided: bindFactories(greylistFactories, { store }),
  // Offline: no DNS checks, no reputation store, no callout.
  omit: PROVIDED_CHECKS.filter((n) => n !== 'greylist'),
  clock,
});

const sessions: Session[] = [
  {
    clientAddress: '209.85.128.54',
    rdns: { names: ['mail-wr1-f54.google.com'], verified: 'mail-wr1-f54.google.com' },
    helo: 'mail-wr1-f54.google.com',
    mailFrom: 'alice@gmail.com',
    rcptTo: 'bob@example.com',
    stage: 'rcpt',
  },
  {
    clientAddress: '73.12.34.56',
    rdns: { names: ['c-73-12-34-56.hsd1.ca.comcast.net'], verified: 'c-73-12-34-56.hsd1.ca.comcast.net' },
    helo: 'pc',
    mailFrom: 'x@example.org',
    rcptTo: 'bob@example.com',
    stage: 'rcpt',
  },
  {
    clientAddress: '198.51.100.20',
    rdns: { names: [] },
    helo: 'host.example.org',
    mailFrom: 'a@example.org',
    rcptTo: 'carol@example.com',
    stage: 'rcpt',
  },
  {
    clientAddress: '203.0.113.9',
    rdns: { names: ['mail.example.net'], verified: 'mail.example.net' },
    helo: 'mail.example.net',
    mailFrom: 'news@example.net',
    rcptTo: 'dave@example.com',
    stage: 'rcpt',
  },
  {
    clientAddress: '203.0.113.10',
    rdns: { names: ['mx.example.com'], verified: null },
    helo: 'mx.example.com',
    mailFrom: 'ceo@example.com',
    rcptTo: 'eve@example.com',
    stage: 'rcpt',
  },
  {
    clientAddress: '2001:db8::25',
    rdns: { names: ['smtp.example.de'], verified: 'smtp.example.de' },
    helo: 'smtp.example.de',
    mailFrom: '',
    rcptTo: 'postmaster@example.com',
    stage: 'rcpt',
  },
  {
    clientAddress: '192.0.2.77',
    rdns: { names: ['relay.example.net'], verified: 'relay.example.net' },
    helo: 'relay.example.net',
    mailFrom: 'a@example.net',
    rcptTo: 'x@elsewhere.org',
    stage: 'rcpt',
  },
  {
    clientAddress: '192.0.2.78',
    rdns: { names: ['host-192-0-2-78.dynamic.example.net'], verified: 'host-192-0-2-78.dynamic.example.net' },
    helo: '[192.0.2.78]',
    mailFrom: 'bulk@example.net',
    rcptTo: 'frank@example.com',
    stage: 'rcpt',
  },
];

async function round(): Promise<Record<string, number>> {
  const actions: Record<string, number> = {};
  for (const s of sessions) {
    // A new session object each time, as every adapter makes one a command: nothing the per-session
    // memo parsed for an earlier evaluation is reused.
    const d = await chain.evaluate({ ...s });
    actions[d.action] = (actions[d.action] ?? 0) + 1;
  }
  return actions;
}

for (let i = 0; i < 200; i++) await round();
const rounds = Number(process.argv[2] ?? 5_000);
const t0 = performance.now();
const cpu0 = process.cpuUsage();
let last: Record<string, number> = {};
for (let i = 0; i < rounds; i++) {
  clock.advance(1_000);
  last = await round();
}
const ms = performance.now() - t0;
const cpu = process.cpuUsage(cpu0);
// CPU time of this process (user + system): on a machine shared with other jobs the wall time
// counts the time other processes held the core, the CPU time does not.
const cpuMs = (cpu.user + cpu.system) / 1000;
const n = rounds * sessions.length;
console.log(
  `full offline recommended chain (${chain.links.length} links), ${n} sessions in ${ms.toFixed(0)} ms`,
);
console.log(
  `  ${Math.round((n / ms) * 1000).toLocaleString('en')} sessions/s, ${((ms * 1000) / n).toFixed(1)} µs a session`,
);
console.log(
  `  per CPU time: ${Math.round((n / cpuMs) * 1000).toLocaleString('en')} sessions/s, ${((cpuMs * 1000) / n).toFixed(1)} µs a session (${cpuMs.toFixed(0)} ms CPU)`,
);
console.log(`  verdict mix of the last round: ${JSON.stringify(last)}`);
await store.close();
