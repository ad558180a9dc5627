/**
 * Pure envelope checks throughput: HELO checks and address checks per second over a fixed,
 * realistic input mix (good names, literals, bare IPs, junk, UTF-8, a few hostile long strings).
 * Run: npx tsx bench/checks.ts
 */
import { cpus } from 'node:os';
import type { Check, CheckContext, Session } from '../packages/core/src/index.js';
import {
  accessTable,
  heloBareIp,
  heloClaimsUs,
  heloFqdn,
  heloLiteralMismatch,
  heloSyntax,
  ManualClock,
  parseAddress,
  recipientFqdn,
  recipientSyntax,
  relayCheck,
  senderForgedOurs,
  senderFqdn,
  senderSyntax,
  silentLogger,
  site,
} from '../packages/core/src/index.js';

const s = site({
  ourDomains: ['example.com', 'example.net'],
  ourHosts: ['mx.example.com'],
  ourAddresses: ['192.0.2.10'],
  ourNetworks: ['10.0.0.0/8', '2001:db8::/32'],
  trustedForwarders: ['203.0.113.0/24', 'fwd.example.org'],
});
const ctx: CheckContext = { clock: new ManualClock(0), log: silentLogger, findings: [] };

const helos = [
  'mail-ed1-f54.google.com',
  'NAM12-BN8-obe.outbound.protection.outlook.com',
  'mx.example.org',
  'smtp.mailgun.org',
  'DiskStation',
  'localhost',
  'mx.example.com',
  '[192.0.2.33]',
  '[IPv6:2001:db8::5]',
  '192.0.2.44',
  'user-pc',
  'a..b',
  'bücher.example',
  '[300.1.1.1]',
  `${'x'.repeat(300)}.example`,
  'host_name.example.net',
];
const addresses = [
  'alice@example.org',
  'bounce-12345-67890@mailer.example.net',
  '0100018f2b3c4d5e-6f7a8b9c-0d1e-2f3a-4b5c-6d7e8f9a0b1c-000000@amazonses.com',
  'SRS0=abcd=XY=example.org=bob@forwarder.example',
  'bob@localhost',
  '"john doe"@example.org',
  'josé@bücher.example',
  'a..b@example.org',
  'postmaster@example.com',
  'x@sub.example.com',
  'user@[192.0.2.1]',
  `${'a'.repeat(70)}@example.org`,
];
const clients = ['198.51.100.7', '10.1.2.3', '2001:db8:1::1', '203.0.113.9'];

function sessions(field: 'helo' | 'addr'): Session[] {
  const out: Session[] = [];
  const inputs = field === 'helo' ? helos : addresses;
  inputs.forEach((x, i) => {
    const clientAddress = clients[i % clients.length] as string;
    out.push(
      field === 'helo'
        ? { clientAddress, stage: 'rcpt', helo: x }
        : { clientAddress, stage: 'rcpt', mailFrom: x, rcptTo: addresses[(i + 3) % addresses.length] },
    );
  });
  return out;
}

function bench(label: string, checks: readonly Check[], inputs: readonly Session[], rounds: number): void {
  let sink = 0;
  const once = () => {
    for (const sess of inputs)
      for (const c of checks) sink += (c.run(sess, ctx) as { action: string }).action.length;
  };
  for (let i = 0; i < 200; i++) once(); // warm-up
  const started = performance.now();
  for (let r = 0; r < rounds; r++) once();
  const ms = performance.now() - started;
  const sessionsJudged = rounds * inputs.length;
  const calls = sessionsJudged * checks.length;
  console.log(
    `${label}: ${sessionsJudged.toLocaleString('en')} inputs x ${checks.length} checks in ${ms.toFixed(0)} ms = ` +
      `${Math.round((sessionsJudged / ms) * 1000).toLocaleString('en')} inputs/s, ` +
      `${Math.round((calls / ms) * 1000).toLocaleString('en')} check calls/s (${((ms * 1000) / calls).toFixed(2)} µs a call; sink ${sink})`,
  );
}

function benchParse(rounds: number): void {
  let sink = 0;
  for (let i = 0; i < 200; i++) for (const a of addresses) sink += parseAddress(a).ok ? 1 : 0;
  const started = performance.now();
  for (let r = 0; r < rounds; r++) for (const a of addresses) sink += parseAddress(a).ok ? 1 : 0;
  const ms = performance.now() - started;
  const n = rounds * addresses.length;
  console.log(
    `parseAddress: ${n.toLocaleString('en')} in ${ms.toFixed(0)} ms = ${Math.round((n / ms) * 1000).toLocaleString('en')} /s (sink ${sink})`,
  );
}

console.log(`Node ${process.version}, ${cpus().length} CPUs (${cpus()[0]?.model ?? 'unknown'})`);
const heloChecks = [heloSyntax(), heloFqdn(), heloBareIp(), heloClaimsUs({}, s), heloLiteralMismatch({}, s)];
const addressChecks = [
  senderSyntax(),
  senderFqdn(),
  senderForgedOurs({}, s),
  recipientSyntax(),
  recipientFqdn(),
  relayCheck({}, s),
];
const table = accessTable({
  key: 'sender',
  entries: Object.fromEntries([
    ...Array.from({ length: 1000 }, (_, i) => [`spam${i}.example`, 'REJECT'] as const),
    ['/^bounce-\\d+/', 'DUNNO'],
  ]),
});
bench('HELO checks', heloChecks, sessions('helo'), 10_000);
bench('address checks', addressChecks, sessions('addr'), 10_000);
bench('sender access table (1001 entries)', [table], sessions('addr'), 10_000);
benchParse(50_000);
