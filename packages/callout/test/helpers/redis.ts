import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** A real redis-server on a free loopback port, with its own empty data dir and no persistence. */
export interface RedisServer {
  readonly url: string;
  stop(): Promise<void>;
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const addr = s.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      s.close(() => resolve(port));
    });
  });
}

async function tryStart(port: number, dir: string): Promise<ChildProcess | undefined> {
  const child = spawn(
    '/usr/bin/redis-server',
    ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  return new Promise((resolve) => {
    let out = '';
    const done = (ok: boolean) => {
      child.stdout?.off('data', onData);
      resolve(ok ? child : undefined);
    };
    const onData = (b: Buffer) => {
      out += b.toString();
      if (out.includes('Ready to accept connections')) done(true);
    };
    child.stdout?.on('data', onData);
    child.once('exit', () => done(false));
  });
}

/** Starts redis-server; retries on another port if the chosen one was taken meanwhile. */
export async function startRedis(): Promise<RedisServer> {
  const dir = mkdtempSync(join(tmpdir(), 'mxguard-redis-'));
  for (let attempt = 0; attempt < 5; attempt++) {
    const port = await freePort();
    const child = await tryStart(port, dir);
    if (!child) continue;
    return {
      url: `redis://127.0.0.1:${port}`,
      async stop() {
        await new Promise<void>((resolve) => {
          child.once('exit', () => resolve());
          child.kill('SIGTERM');
        });
        rmSync(dir, { recursive: true, force: true });
      },
    };
  }
  rmSync(dir, { recursive: true, force: true });
  throw new Error('could not start redis-server');
}
