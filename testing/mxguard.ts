/**
 * The built `mxguard` binary as a user starts it, for the tests of `serve` and `policy` that need a
 * real process (its log, its signals): started on a free loopback port (port 0), read up to its
 * banner, stopped with SIGTERM.
 */
import { type ChildProcessWithoutNullStreams, spawn } from 'node:child_process';
import { connect } from 'node:net';
import { fileURLToPath } from 'node:url';

export const mxguardBin = fileURLToPath(new URL('../packages/cli/dist/bin.js', import.meta.url));

export interface Running {
  readonly child: ChildProcessWithoutNullStreams;
  /** What it wrote on stdout so far (the banner). */
  stdout(): string;
  /** What it wrote on stderr so far (the log, unless --log-file). */
  stderr(): string;
  /** `127.0.0.1:PORT` of its SMTP or policy listener. */
  readonly address: string;
  readonly port: number;
  /** The `--http` listener's `127.0.0.1:PORT`, when it has one. */
  readonly http?: string;
  /** Resolves when stderr has a line matching `re` (at most `ms`), with that line. */
  waitLog(re: RegExp, ms?: number): Promise<string>;
  stop(): Promise<void>;
}

/**
 * Starts `mxguard serve|policy --listen 127.0.0.1:0 ...args` and resolves once it listens (its
 * banner names the port). Rejects if it exits first or takes longer than `ms`.
 */
export function startMxguard(command: 'serve' | 'policy', args: string[], ms = 45_000): Promise<Running> {
  const child = spawn(process.execPath, [mxguardBin, command, '--listen', '127.0.0.1:0', ...args]);
  let out = '';
  let err = '';
  child.stdout.on('data', (b: Buffer) => {
    out += b.toString();
  });
  child.stderr.on('data', (b: Buffer) => {
    err += b.toString();
  });
  const waitLog = (re: RegExp, wait = 15_000) =>
    new Promise<string>((resolve, reject) => {
      const find = () => err.split('\n').find((l) => re.test(l));
      const timer = setTimeout(() => {
        child.stderr.off('data', on);
        reject(new Error(`no log line matching ${re} in ${wait} ms: ${err.slice(-2000)}`));
      }, wait);
      const on = () => {
        const l = find();
        if (l === undefined) return;
        clearTimeout(timer);
        child.stderr.off('data', on);
        resolve(l);
      };
      child.stderr.on('data', on);
      on();
    });
  const stop = async () => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise((r) => child.once('exit', r));
    child.kill('SIGTERM');
    await exited;
  };
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      void stop();
      reject(new Error(`mxguard ${command} did not start: ${out}${err}`));
    }, ms);
    const onExit = (code: number | null) => {
      clearTimeout(timer);
      reject(new Error(`mxguard ${command} exited ${code}: ${out}${err}`));
    };
    child.once('exit', onExit);
    const onData = () => {
      const m = /listening on (?:inet:)?(127\.0\.0\.1:(\d+))/.exec(out);
      // Up to the banner's last line (serve: the second swaks line), which may come in a chunk of
      // its own.
      const ready = command === 'serve' ? /# refused: helo-claims-us\n/.test(out) : out.includes('main.cf');
      if (!m || !ready) return;
      if (args.includes('--http') && !/^status: /m.test(out)) return;
      clearTimeout(timer);
      child.stdout.off('data', onData);
      child.off('exit', onExit);
      const http = /^status: http:\/\/(127\.0\.0\.1:\d+)\//m.exec(out)?.[1];
      resolve({
        child,
        stdout: () => out,
        stderr: () => err,
        address: m[1]!,
        port: Number(m[2]),
        ...(http ? { http } : {}),
        waitLog,
        stop,
      });
    };
    child.stdout.on('data', onData);
  });
}

/**
 * Sends policy requests on one connection (a loopback port, or a UNIX socket path) and resolves
 * with one `action=` answer for each.
 */
export function askPolicy(target: number | string, requests: Record<string, string>[]): Promise<string[]> {
  return new Promise((resolve, reject) => {
    const sock = typeof target === 'string' ? connect(target) : connect(target, '127.0.0.1');
    let buf = '';
    sock.setEncoding('utf8');
    sock.on('data', (d: string) => {
      buf += d;
      const answers = buf.split('\n\n').filter((a) => a.startsWith('action='));
      if (answers.length === requests.length) {
        sock.end();
        resolve(answers.map((a) => a.slice('action='.length)));
      }
    });
    sock.on('error', reject);
    sock.write(
      requests
        .map(
          (r) =>
            `${Object.entries(r)
              .map(([k, v]) => `${k}=${v}\n`)
              .join('')}\n`,
        )
        .join(''),
    );
  });
}

/** swaks in a child process (never blocking the test's own event loop); resolves with its output. */
export function swaksAsync(server: string, args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    const c = spawn('swaks', ['--server', server, '--timeout', '10', ...args]);
    let out = '';
    c.stdout.on('data', (b: Buffer) => {
      out += b.toString();
    });
    c.stderr.on('data', (b: Buffer) => {
      out += b.toString();
    });
    c.on('error', reject);
    c.on('close', () => resolve(out));
  });
}
