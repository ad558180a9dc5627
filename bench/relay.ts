/**
 * The before-queue proxy's cost: the same message stream (nodemailer, a pool of persistent
 * connections, each waiting for its previous message) sent straight into a private Postfix 3.7 on
 * loopback, then through `mxguard serve`'s gateway (recommended preset, pure checks, relaying to
 * that Postfix with recipients checked at RCPT) in one run. Postfix discards what it accepts
 * (transport `discard`), so the disk does not decide. Needs root (Postfix) and Debian's postfix.
 * Reports messages/s and per-message latency percentiles for both, and the proxy's added latency.
 * Run: npx tsx bench/relay.ts [messages=1000] [connections=8]
 */
import { cpus } from 'node:os';
import { PROVIDED_CHECKS, recommended, silentLogger } from '../packages/core/src/index.js';
import { startGateway } from '../packages/smtp/src/index.js';
import { type MailLoad, percentile, poolTransport, sendAll } from '../testing/mail-load.js';
import { freePort } from '../testing/net.js';
import { postfixAvailable, startPostfix } from '../testing/postfix-instance.js';

if (!postfixAvailable) {
  console.error('bench/relay.ts needs Debian postfix and root');
  process.exit(1);
}
const total = Number(process.argv[2] ?? 1000);
const connections = Number(process.argv[3] ?? 8);
const smtpPort = await freePort();
const postfix = await startPostfix({
  mainCf: `virtual_mailbox_domains =
relay_domains = example.com
transport_maps = inline:{ example.com=discard: }
smtpd_recipient_restrictions = permit_mynetworks, reject
`,
  smtpd: { [smtpPort]: '' },
});
// The pure checks only: no DNS, no stores.
const policy = recommended({
  ourDomains: ['example.com'],
  ourHosts: ['mx.example.com'],
  omit: PROVIDED_CHECKS,
});
const gw = await startGateway({
  chain: policy.chain,
  log: silentLogger,
  relay: `smtp://127.0.0.1:${smtpPort}`,
  verifyRecipients: process.env.VERIFY !== '0',
  port: 0,
  // The benchmark's clients all come from 127.0.0.1.
  ourNetworks: ['127.0.0.0/8'],
});
const body = `From: a@sender.example.net\r\nTo: user@example.com\r\nSubject: bench\r\nDate: Tue, 01 Dec 2026 15:00:00 +0000\r\nMessage-ID: <bench@sender.example.net>\r\n\r\n${'The quick brown fox jumps over the lazy dog.\r\n'.repeat(40)}`;

async function run(port: number): Promise<MailLoad> {
  const transport = poolTransport(port, connections);
  await sendAll(transport, Math.min(100, total), connections, body); // warm-up
  const load = await sendAll(transport, total, connections, body);
  transport.close();
  return load;
}

const direct = await run(smtpPort);
const proxied = await run(gw.port);
await gw.close();
await postfix.close();

console.log(`machine: ${cpus()[0]?.model ?? 'unknown'} x${cpus().length}, node ${process.version}`);
console.log(`messages: ${total} over ${connections} connections, ${body.length} bytes each`);
for (const [name, r] of [
  ['Postfix alone', direct],
  ['mxguard -> Postfix', proxied],
] as const) {
  console.log(
    `${name.padEnd(20)} ${(r.latencies.length / r.seconds).toFixed(0).padStart(5)} messages/s, failed ${r.failed}; ms p50 ${percentile(r.latencies, 50)}  p90 ${percentile(r.latencies, 90)}  p99 ${percentile(r.latencies, 99)}`,
  );
}
const added = (p: number) =>
  (Number(percentile(proxied.latencies, p)) - Number(percentile(direct.latencies, p))).toFixed(1);
console.log(`added by the proxy: p50 ${added(50)} ms, p99 ${added(99)} ms`);
