/**
 * The Haraka plugin's cost: the same stream of messages through a real Haraka (single process,
 * `nodes=0`, on loopback) twice, once with Haraka's own recipient plugin only
 * (`rcpt_to.in_host_list`) and once with `mxguard` (the recommended preset, offline) in its place;
 * `queue/discard` accepts every message in both. nodemailer sends over a pool of persistent
 * connections, one sender per connection waiting for each message. Haraka logs at `warn` in both
 * runs, so neither pays for info lines.
 * Needs `pnpm build` (Haraka loads the plugin's built runtime).
 * Run: npx tsx bench/haraka.ts [messages=2000] [connections=8]
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import nodemailer from 'nodemailer';
import { percentile, poolTransport, sendAll } from '../testing/mail-load.js';
import { freePort } from '../testing/net.js';

const total = Number(process.argv[2] ?? 2000);
const connections = Number(process.argv[3] ?? 8);
const root = fileURLToPath(new URL('../', import.meta.url));
const harakaBin = join(root, 'node_modules', 'Haraka', 'bin', 'haraka');
const tmp = mkdtempSync(join(tmpdir(), 'mxguard-bench-haraka-'));

/** An installed Haraka with `plugins` on a free loopback port; resolves once it listens. */
async function haraka(name: string, plugins: string[]): Promise<{ port: number; child: ChildProcess }> {
  const dir = join(tmp, name);
  const install = spawnSync(process.execPath, [harakaBin, '-i', dir], { encoding: 'utf8' });
  if (install.status !== 0) throw new Error(`haraka -i: ${install.stderr}`);
  mkdirSync(join(dir, 'node_modules'), { recursive: true });
  symlinkSync(join(root, 'packages', 'haraka'), join(dir, 'node_modules', 'haraka-plugin-mxguard'), 'dir');
  const config = join(dir, 'config');
  const port = await freePort();
  writeFileSync(join(config, 'me'), 'mx.example.com\n');
  writeFileSync(join(config, 'host_list'), 'example.com\n');
  writeFileSync(join(config, 'plugins'), `${plugins.join('\n')}\n`);
  writeFileSync(join(config, 'log.ini'), '[main]\nlevel=warn\n');
  writeFileSync(join(config, 'smtp.ini'), `listen=127.0.0.1:${port}\nnodes=0\n`);
  writeFileSync(join(config, 'mxguard.json'), JSON.stringify({ ourDomains: ['example.com'], offline: true }));
  const child = spawn(process.execPath, [harakaBin, '-c', dir], {
    cwd: dir,
    env: { ...process.env, YES_REALLY_DO_DISCARD: '1', NODE_NO_WARNINGS: '1' },
    stdio: 'ignore',
    detached: true,
  });
  // Listening once a connection gets Haraka's banner.
  for (let i = 0; i < 200; i++) {
    const t = nodemailer.createTransport({ host: '127.0.0.1', port, ignoreTLS: true });
    if (await t.verify().catch(() => false)) {
      t.close();
      return { port, child };
    }
    t.close();
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`Haraka (${name}) did not start`);
}

function stop(child: ChildProcess): Promise<void> {
  return new Promise((resolve) => {
    if (child.exitCode !== null) return resolve();
    child.once('exit', () => resolve());
    // SIGINT is Haraka's stop signal; sent to its process group.
    process.kill(-(child.pid ?? 0), 'SIGINT');
  });
}

const body = `From: a@sender.example.net\r\nTo: user@example.com\r\nSubject: bench\r\n\r\n${'The quick brown fox jumps over the lazy dog.\r\n'.repeat(40)}`;

async function run(name: string, plugins: string[]) {
  const { port, child } = await haraka(name, plugins);
  const transport = poolTransport(port, connections);
  const { latencies, failed, seconds: elapsed } = await sendAll(transport, total, connections, body);
  transport.close();
  await stop(child);
  const pct = (p: number) => percentile(latencies, p);
  console.log(
    `${name.padEnd(28)} ${(latencies.length / elapsed).toFixed(0).padStart(5)} messages/s  ` +
      `p50 ${pct(50)}  p90 ${pct(90)}  p99 ${pct(99)}  max ${pct(100)} ms  (failed ${failed})`,
  );
}

console.log(`machine: ${cpus()[0]?.model ?? 'unknown'} x${cpus().length}, node ${process.version}`);
console.log(`messages: ${total} over ${connections} connections, ${body.length} bytes each`);
try {
  await run('Haraka, rcpt_to.in_host_list', ['rcpt_to.in_host_list', 'queue/discard']);
  await run('Haraka + mxguard', ['mxguard', 'queue/discard']);
} finally {
  rmSync(tmp, { recursive: true, force: true });
}
