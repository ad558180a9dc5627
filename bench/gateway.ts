/**
 * The example gateway end to end on loopback: nodemailer clients (a pool of persistent
 * connections) send a fixed number of small messages through startGateway with the recommended
 * preset (pure checks; no DNS, no greylist) and every message is spooled (fsync + rename).
 * One sender per connection, each waiting for its previous message. Reports messages per second
 * and per-message latency percentiles (MAIL to the 250 after DATA, the first message of a
 * connection including its connect, greeting and EHLO).
 * Run: npx tsx bench/gateway.ts [messages=2000] [connections=8]
 */
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { PROVIDED_CHECKS, recommended, silentLogger } from '../packages/core/src/index.js';
import { startGateway } from '../packages/smtp/src/index.js';
import { percentile, poolTransport, sendAll } from '../testing/mail-load.js';

const total = Number(process.argv[2] ?? 2000);
const connections = Number(process.argv[3] ?? 8);
const dir = await mkdtemp(join(tmpdir(), 'mxguard-bench-spool-'));
// The pure checks only: no DNS, no stores.
const policy = recommended({
  ourDomains: ['example.com'],
  ourHosts: ['mx.example.com'],
  omit: PROVIDED_CHECKS,
});
// Every connection comes from 127.0.0.1: lift the per-client connection limits (anvil), which
// would otherwise turn most of 32 connections from one address away.
const gw = await startGateway({
  chain: policy.chain,
  log: silentLogger,
  spoolDir: dir,
  port: 0,
  connectionLimits: { perClient: 0, ratePerMinute: 0 },
});
const transport = poolTransport(gw.port, connections);
const body = `From: a@sender.example.net\r\nTo: user@example.com\r\nSubject: bench\r\n\r\n${'The quick brown fox jumps over the lazy dog.\r\n'.repeat(40)}`;
const { latencies, failed, seconds: elapsed } = await sendAll(transport, total, connections, body);
transport.close();
await gw.close();
const spooled = (await readdir(dir)).filter((f) => f.endsWith('.msg')).length;
await rm(dir, { recursive: true, force: true });
const pct = (p: number) => percentile(latencies, p);
console.log(`machine: ${cpus()[0]?.model ?? 'unknown'} x${cpus().length}, node ${process.version}`);
console.log(
  `messages: ${total} over ${connections} connections, ${body.length} bytes each; failed ${failed}; spooled ${spooled}`,
);
console.log(`throughput: ${(latencies.length / elapsed).toFixed(0)} messages/s (${elapsed.toFixed(2)} s)`);
console.log(
  `latency per message (MAIL to the 250 after DATA), ms: p50 ${pct(50)}  p90 ${pct(90)}  p99 ${pct(99)}  max ${pct(100)}`,
);
