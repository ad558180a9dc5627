/**
 * The Postfix policy server against postgrey and against the protocol's limit, with the same
 * request stream in one run.
 *
 * Run: npx tsx bench/policy.ts [requests] [connections]     (defaults: 20000 over 8)
 *
 * Four servers, each in a child process of its own, so the benchmark client does not share its
 * event loop:
 * - answer-only: this file with `--answer-only`, a server that reads each request up to its empty
 *   line and answers `action=DUNNO` at once. It judges nothing: its rate is the limit of the
 *   protocol with this client on this machine, the ceiling the others are measured against.
 * - mxguard, recommended: `mxguard policy --offline` with a config of our domains and hosts, the
 *   preset as a new user runs it (its decision lines to a file): packages/cli/dist/bin.js under
 *   plain node, as the `mxguard` command runs, not tsx's transform of the sources.
 * - mxguard, postgrey-equivalent: `mxguard policy --offline` too, with a config whose `checks` are
 *   the pure envelope checks (helo-syntax, helo-fqdn, helo-claims-us, sender-fqdn, recipient-fqdn)
 *   and the greylist check in `all` mode with no providers' list and the in-memory store, as
 *   postgrey greylists every triplet (POSTGREY_CHECKS).
 * - postgrey (Debian, /usr/sbin/postgrey) is started on a free loopback port with its own --dbdir in
 *   a temp dir and empty allowlists, and stopped at the end.
 * - The stream: N requests as Postfix 3.7 sends them at RCPT, from a seeded generator: 2,000
 *   clients in 500 /24 networks, each triplet seen 1-3 times, so both servers mostly say
 *   "greylisted" (new or early) with a 300 s delay.
 * - Warm-up: each server first answers requests of another stream (other clients) for WARM_SECONDS
 *   (`BENCH_WARM_SECONDS`, 3 by default), then the measured stream. A policy server runs for days;
 *   what it does in its first seconds, while V8 compiles its hot functions (measured: with a warm-up
 *   of 1,000 requests the compiler's thread took a tenth of mxguard's CPU in the measured part), is
 *   not its speed. A warm-up by time, not by count, gives the slow server (postgrey) the same time.
 * - The judging servers log one line a decision to a file in the temp dir (postgrey to stderr when
 *   not daemonised, mxguard one JSON line).
 * - C connections, each sending one request and waiting for its answer before the next, as each
 *   Postfix smtpd process does. Latency: from the write to the whole answer.
 * - BENCH_EMPTY_CHAIN=1 adds mxguard's policy server with an empty chain and no log (see
 *   serveEmpty); BENCH_MXGUARD_ARGS passes more flags to `mxguard policy` (`--log-level warn`).
 * - The servers take turns: the stream is cut into SLICES slices and each slice goes to every
 *   server in turn, so the machine's load (other jobs) weighs on all of them alike.
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { chownSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { connect, createServer, type Socket } from 'node:net';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { chain } from '@mxguard/core';
import { formatRequest, startPolicyServer } from '@mxguard/postfix';
import { freePort } from '../testing/net.js';
import { rcptRequest } from '../testing/postfix.js';

const POSTGREY = '/usr/sbin/postgrey';
/** Seconds of warm-up traffic each server gets before the measured stream (see the header). */
const WARM_SECONDS = Number(process.env.BENCH_WARM_SECONDS ?? 3);
/** The stream is cut into this many slices, each sent to every server in turn. */
const SLICES = 10;

/**
 * `BENCH_EMPTY_CHAIN=1` adds this: mxguard's policy server with a chain of no links and a logger
 * that writes nothing. What it costs over the answer-only server is the server's own work a request
 * (parsing, the session, the transaction cache, the time budget), apart from the checks and the
 * log line.
 */
async function serveEmpty(): Promise<void> {
  const silent = { debug() {}, info() {}, warn() {}, error() {} };
  const server = await startPolicyServer({
    listen: { host: '127.0.0.1', port: 0 },
    chain: chain([]),
    log: silent,
  });
  process.stdout.write(`${(server.address as { port: number }).port}\n`);
  process.on('SIGTERM', () => {
    void server.close().then(() => process.exit(0));
  });
}

/** The answer-only server: no parsing beyond the empty line that ends a request, no judging. */
function answerOnly(): void {
  const server = createServer((socket) => {
    socket.setNoDelay(true);
    let tail = '';
    socket.setEncoding('latin1');
    socket.on('data', (d: string) => {
      const text = tail + d;
      let from = 0;
      let answers = '';
      for (let end = text.indexOf('\n\n'); end >= 0; end = text.indexOf('\n\n', from)) {
        answers += 'action=DUNNO\n\n';
        from = end + 2;
      }
      tail = text.slice(from);
      if (answers) socket.write(answers);
    });
    socket.on('error', () => {});
  });
  server.listen(0, '127.0.0.1', () => {
    process.stdout.write(`${(server.address() as { port: number }).port}\n`);
  });
  process.on('SIGTERM', () => server.close(() => process.exit(0)));
}

/** mulberry32: a small seeded PRNG, so every run sends the same stream. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function stream(n: number, seed: number): string[] {
  const rnd = prng(seed);
  const pick = (k: number) => Math.floor(rnd() * k);
  const out: string[] = [];
  const recent: string[] = [];
  for (let i = 0; i < n; i++) {
    // A third of the requests repeat a recent triplet (a retry, early for a 300 s delay).
    if (recent.length > 0 && rnd() < 1 / 3) {
      out.push(recent[pick(recent.length)] as string);
      continue;
    }
    const c = pick(2000);
    const net = c % 500;
    const ip = `198.${18 + (net >> 8)}.${net & 255}.${1 + (c % 250)}`;
    const host = `mail${c}.sender${c % 700}.example.net`;
    const req = formatRequest(
      rcptRequest({
        client_address: ip,
        client_name: host,
        reverse_client_name: host,
        client_port: String(1024 + pick(60000)),
        helo_name: host,
        sender: `user${pick(5000)}@sender${c % 700}.example.net`,
        recipient: `rcpt${pick(300)}@example.com`,
        instance: `${c.toString(16)}.${i.toString(16)}.0`,
      }),
    );
    out.push(req);
    recent.push(req);
    if (recent.length > 500) recent.shift();
  }
  return out;
}

interface Result {
  readonly rps: number;
  /** The server's CPU time a request, microseconds. */
  readonly cpuUs: number;
  readonly p50: number;
  readonly p90: number;
  readonly p99: number;
  readonly max: number;
  readonly actions: Record<string, number>;
}

function open(port: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = connect(port, '127.0.0.1');
    s.setNoDelay(true);
    s.once('connect', () => resolve(s));
    s.once('error', reject);
  });
}

/** One connection's request/answer loop. */
function asker(socket: Socket): (req: string) => Promise<string> {
  let buf = '';
  let waiting: ((a: string) => void) | undefined;
  socket.setEncoding('utf8');
  socket.on('data', (d: string) => {
    buf += d;
    const end = buf.indexOf('\n\n');
    if (end >= 0 && waiting) {
      const a = buf.slice(0, end);
      buf = buf.slice(end + 2);
      const w = waiting;
      waiting = undefined;
      w(a);
    }
  });
  return (req) =>
    new Promise((resolve) => {
      waiting = resolve;
      socket.write(req);
    });
}

/** What one server did with one slice of the stream. */
interface Run {
  seconds: number;
  /** CPU seconds (user + system) the server's process spent on the slices. */
  cpu: number;
  readonly latencies: number[];
  readonly actions: Record<string, number>;
}

/** Sends `requests` over `connections` connections to `port`, adding to `run`. */
async function drive(port: number, requests: string[], connections: number, run: Run): Promise<void> {
  const sockets = await Promise.all(Array.from({ length: connections }, () => open(port)));
  const askers = sockets.map(asker);
  const { latencies, actions } = run;
  let next = 0;
  const start = performance.now();
  await Promise.all(
    askers.map(async (ask) => {
      while (next < requests.length) {
        const i = next++;
        const t = performance.now();
        const answer = await ask(requests[i] as string);
        latencies.push(performance.now() - t);
        const kind = answer.replace(/^action=/, '').split(' ')[0] ?? '?';
        actions[kind] = (actions[kind] ?? 0) + 1;
      }
    }),
  );
  run.seconds += (performance.now() - start) / 1000;
  for (const s of sockets) s.destroy();
}

/**
 * CPU seconds (user + system) a process has used, from /proc (Linux), or NaN. The machine is
 * shared: unlike the wall time, this does not count the time other jobs held the core.
 */
function cpuSeconds(pid: number | undefined): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after the command name (which may hold spaces) in parentheses; utime and stime are
    // the 14th and 15th fields, in clock ticks (USER_HZ, 100 on Linux).
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(f[11]) + Number(f[12])) / 100;
  } catch {
    return Number.NaN;
  }
}

function summary(run: Run): Result {
  const sorted = Float64Array.from(run.latencies).sort();
  const at = (q: number) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? 0;
  return {
    rps: run.latencies.length / run.seconds,
    cpuUs: (run.cpu * 1e6) / run.latencies.length,
    p50: at(0.5),
    p90: at(0.9),
    p99: at(0.99),
    max: sorted.at(-1) ?? 0,
    actions: run.actions,
  };
}

async function waitFor(port: number, child: ChildProcess, what: string): Promise<void> {
  for (let i = 0; i < 300; i++) {
    if (child.exitCode !== null) throw new Error(`${what} exited with ${child.exitCode}`);
    const ok = await new Promise<boolean>((resolve) => {
      const s = connect(port, '127.0.0.1');
      s.once('connect', () => {
        s.destroy();
        resolve(true);
      });
      s.once('error', () => resolve(false));
    });
    if (ok) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`${what} did not listen on ${port}`);
}

function stop(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const t = setTimeout(() => child.kill('SIGKILL'), 10_000);
    child.once('exit', () => {
      clearTimeout(t);
      resolve();
    });
    child.kill('SIGTERM');
  });
}

/** This file again in a child process with `args`; it prints its port on its first line. */
async function startChild(args: string[], what: string): Promise<{ port: number; child: ChildProcess }> {
  const script = fileURLToPath(import.meta.url);
  const child = spawn(process.execPath, [...process.execArgv, script, ...args], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const port = await new Promise<number>((resolve, reject) => {
    let out = '';
    child.stdout?.on('data', (d: Buffer) => {
      out += d.toString();
      const m = /^(\d+)\n/.exec(out);
      if (m) resolve(Number(m[1]));
    });
    child.once('exit', (code) => reject(new Error(`${what} exited with ${code}`)));
  });
  return { port, child };
}

/**
 * `mxguard policy --offline` as the `mxguard` command runs it (packages/cli/dist/bin.js, plain
 * node: not tsx's transform of the sources), its log (stderr) to a file.
 */
/** The checks of postgrey, as an mxguard config names them: postgrey greylists every triplet. */
const POSTGREY_CHECKS = [
  'helo-syntax',
  'helo-fqdn',
  'helo-claims-us',
  'sender-fqdn',
  'recipient-fqdn',
  { name: 'greylist', mode: 'all', providers: false, delay: 300 },
];

/** `mxguard policy --offline` with `config` (and our domains and hosts), as a user runs it. */
async function startCli(
  dir: string,
  name: string,
  config: object,
): Promise<{ port: number; child: ChildProcess }> {
  const port = await freePort();
  const configPath = join(dir, `${name}.json`);
  writeFileSync(
    configPath,
    JSON.stringify({ ourDomains: ['example.com'], ourHosts: ['mx.example.com'], ...config }),
  );
  const bin = fileURLToPath(new URL('../packages/cli/dist/bin.js', import.meta.url));
  const log = openSync(join(dir, `${name}.log`), 'a');
  const child = spawn(
    process.execPath,
    [
      // BENCH_CPU_PROF=DIR: a CPU profile of the policy server, written to DIR when it stops.
      ...(process.env.BENCH_CPU_PROF ? ['--cpu-prof', `--cpu-prof-dir=${process.env.BENCH_CPU_PROF}`] : []),
      bin,
      'policy',
      '--offline',
      '--listen',
      `127.0.0.1:${port}`,
      '--config',
      configPath,
      // BENCH_MXGUARD_ARGS='--log-level warn': more flags for `mxguard policy` (here: without its
      // decision lines, to see what they cost).
      ...(process.env.BENCH_MXGUARD_ARGS ?? '').split(' ').filter(Boolean),
    ],
    { stdio: ['ignore', 'ignore', log] },
  );
  await waitFor(port, child, 'mxguard policy');
  return { port, child };
}

async function startPostgrey(dir: string): Promise<{ port: number; child: ChildProcess }> {
  const port = await freePort();
  const db = join(dir, 'db');
  mkdirSync(db);
  writeFileSync(join(dir, 'whitelist_clients'), '');
  writeFileSync(join(dir, 'whitelist_recipients'), '');
  const args = [
    `--inet=127.0.0.1:${port}`,
    `--dbdir=${db}`,
    `--pidfile=${join(dir, 'postgrey.pid')}`,
    '--delay=300',
    '--max-age=35',
    `--whitelist-clients=${join(dir, 'whitelist_clients')}`,
    `--whitelist-recipients=${join(dir, 'whitelist_recipients')}`,
    '--hostname=mx.example.com',
  ];
  if (process.getuid?.() === 0) {
    // postgrey drops to the postgrey user; its database directory must be its own.
    const uid = Number(execFileSync('id', ['-u', 'postgrey']).toString());
    const gid = Number(execFileSync('id', ['-g', 'postgrey']).toString());
    chownSync(db, uid, gid);
    chownSync(dir, uid, gid);
  }
  // postgrey logs one line a decision to stderr when not daemonised: to a file, like mxguard's.
  const log = openSync(join(dir, 'postgrey.log'), 'a');
  const child = spawn(POSTGREY, args, { stdio: ['ignore', 'ignore', log] });
  await waitFor(port, child, 'postgrey');
  return { port, child };
}

function row(name: string, r: Result, limit: number, postgrey: number): string {
  const f = (x: number) => x.toFixed(2).padStart(6);
  const ofLimit = `${Math.round((100 * r.rps) / limit)}%`.padStart(5);
  const xPostgrey = `${(r.rps / postgrey).toFixed(1)}x`.padStart(6);
  return `| ${name.padEnd(27)} | ${Math.round(r.rps).toString().padStart(6)} | ${ofLimit} | ${xPostgrey} | ${Math.round(r.cpuUs).toString().padStart(6)} | ${f(r.p50)} | ${f(r.p90)} | ${f(r.p99)} | ${f(r.max)} | ${JSON.stringify(r.actions)} |`;
}

async function main(): Promise<void> {
  const n = Number(process.argv[2] ?? 20_000);
  const c = Number(process.argv[3] ?? 8);
  // Enough other requests for WARM_SECONDS at the answer-only server's rate, sent in turns of 1,000.
  const warm = stream(Math.max(1_000, Math.ceil(WARM_SECONDS * 40_000)), 7);
  const requests = stream(n, 42);
  const dir = mkdtempSync(join(tmpdir(), 'mxguard-bench-policy-'));
  const children: ChildProcess[] = [];
  try {
    // Each child is recorded as soon as it runs, so a failure to start the next one stops it too.
    const servers: [string, { port: number; child: ChildProcess }][] = [];
    const add = (name: string, s: { port: number; child: ChildProcess }) => {
      children.push(s.child);
      servers.push([name, s]);
    };
    add('answer-only (limit)', await startChild(['--answer-only'], 'answer-only server'));
    if (process.env.BENCH_EMPTY_CHAIN)
      add('mxguard, empty chain', await startChild(['--serve-empty'], 'mxguard with an empty chain'));
    add('mxguard, recommended', await startCli(dir, 'recommended', {}));
    add(
      'mxguard, postgrey-equivalent',
      await startCli(dir, 'postgrey-equivalent', { checks: POSTGREY_CHECKS }),
    );
    add('postgrey', await startPostgrey(dir));
    for (const [, s] of servers) {
      const until = performance.now() + WARM_SECONDS * 1000;
      let from = 0;
      do {
        await drive(s.port, warm.slice(from, from + 1_000), c, {
          seconds: 0,
          cpu: 0,
          latencies: [],
          actions: {},
        });
        from = (from + 1_000) % warm.length;
      } while (performance.now() < until);
    }
    // The contestants take turns, a slice of the stream each, so a change in the machine's load
    // (other jobs) falls on all of them rather than on whichever ran at that moment.
    const runs = servers.map((): Run => ({ seconds: 0, cpu: 0, latencies: [], actions: {} }));
    const size = Math.ceil(n / SLICES);
    for (let from = 0; from < n; from += size) {
      const slice = requests.slice(from, from + size);
      for (const [i, [, s]] of servers.entries()) {
        const run = runs[i] as Run;
        const cpu0 = cpuSeconds(s.child.pid);
        await drive(s.port, slice, c, run);
        run.cpu += cpuSeconds(s.child.pid) - cpu0;
      }
    }
    const results: [string, Result][] = servers.map(([name], i) => [name, summary(runs[i] as Run)]);
    const limit = results[0]?.[1].rps ?? 1;
    const postgrey = results.at(-1)?.[1].rps ?? 1;
    const postgreyVersion = execFileSync(POSTGREY, ['--version']).toString().trim();
    console.log(`policy servers: ${n} requests over ${c} connections, loopback`);
    console.log(
      `machine: ${cpus().length} x ${cpus()[0]?.model ?? '?'}, Node ${process.version}; ${postgreyVersion}`,
    );
    console.log(
      '| server                      |  req/s | limit | xpgrey | CPU µs | p50 ms | p90 ms | p99 ms | max ms | answers |',
    );
    console.log(
      '|-----------------------------|-------:|------:|-------:|-------:|-------:|-------:|-------:|-------:|---------|',
    );
    for (const [name, r] of results) console.log(row(name, r, limit, postgrey));
  } finally {
    await Promise.all(children.map(stop));
    rmSync(dir, { recursive: true, force: true });
  }
}

if (process.argv.includes('--answer-only')) {
  answerOnly();
} else if (process.argv.includes('--serve-empty')) {
  await serveEmpty();
} else {
  await main();
}
