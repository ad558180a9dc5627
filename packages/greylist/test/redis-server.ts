import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from '../../../testing/net.js';

/** A real redis-server (Debian's /usr/bin/redis-server) on a free loopback port, with its own data dir. */
export interface RedisServer {
  readonly port: number;
  readonly url: string;
  readonly dir: string;
  /** Starts it again on the same port and data dir (after `kill` or `stop`). */
  start(): Promise<void>;
  /** SIGKILL: no chance to flush anything (a crash). */
  kill(): Promise<void>;
  /** SIGTERM: a clean shutdown. */
  stop(): Promise<void>;
  /** Stops it and removes the data dir. */
  dispose(): Promise<void>;
}

const REDIS = process.env.REDIS_SERVER ?? '/usr/bin/redis-server';

/**
 * Starts redis-server with persistence on (AOF, by default fsync at every write, so even a SIGKILL
 * loses nothing acknowledged) and no RDB snapshots, bound to 127.0.0.1 only.
 */
export async function startRedis(
  options: { appendfsync?: 'always' | 'everysec' | 'no' } = {},
): Promise<RedisServer> {
  const dir = mkdtempSync(join(tmpdir(), 'mxg-redis-'));
  let child: ChildProcess | undefined;
  let port = 0;

  const launch = (p: number) =>
    new Promise<void>((resolve, reject) => {
      const c = spawn(
        REDIS,
        [
          '--port',
          String(p),
          '--bind',
          '127.0.0.1',
          '--save',
          '',
          '--appendonly',
          'yes',
          '--appendfsync',
          options.appendfsync ?? 'always',
          '--dir',
          dir,
          '--protected-mode',
          'yes',
          '--daemonize',
          'no',
          '--logfile',
          '',
        ],
        { stdio: ['ignore', 'pipe', 'pipe'] },
      );
      let out = '';
      const timer = setTimeout(() => {
        c.kill('SIGKILL');
        reject(new Error(`redis-server did not start: ${out}`));
      }, 10_000);
      c.stdout?.on('data', (b: Buffer) => {
        out += b.toString();
        if (out.includes('Ready to accept connections')) {
          clearTimeout(timer);
          child = c;
          resolve();
        }
      });
      c.once('exit', (code) => {
        clearTimeout(timer);
        if (child !== c) reject(new Error(`redis-server exited (${code}): ${out}`));
      });
    });

  const waitExit = (signal: NodeJS.Signals) =>
    new Promise<void>((resolve) => {
      const c = child;
      child = undefined;
      if (!c || c.exitCode !== null || c.signalCode !== null) return resolve();
      c.once('exit', () => resolve());
      c.kill(signal);
    });

  // A free port can be taken between the probe and the bind: try a few.
  for (let attempt = 0; ; attempt++) {
    port = await freePort();
    try {
      await launch(port);
      break;
    } catch (err) {
      if (attempt >= 4) throw err;
    }
  }

  return {
    port,
    url: `redis://127.0.0.1:${port}/0`,
    dir,
    start: () => launch(port),
    kill: () => waitExit('SIGKILL'),
    stop: () => waitExit('SIGTERM'),
    async dispose() {
      await waitExit('SIGKILL');
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
