import { mkdtemp, rm } from 'node:fs/promises';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Logger } from '@mxguard/core';
import { ManualClock } from '@mxguard/core';
import { type Gateway, type GatewayOptions, startGateway } from '@mxguard/smtp';

/** A logger that keeps every line, for assertions. */
export class MemoryLogger implements Logger {
  readonly lines: { level: string; obj: Record<string, unknown>; msg?: string }[] = [];
  debug(obj: object, msg?: string): void {
    this.push('debug', obj, msg);
  }
  info(obj: object, msg?: string): void {
    this.push('info', obj, msg);
  }
  warn(obj: object, msg?: string): void {
    this.push('warn', obj, msg);
  }
  error(obj: object, msg?: string): void {
    this.push('error', obj, msg);
  }
  private push(level: string, obj: object, msg?: string): void {
    const line: { level: string; obj: Record<string, unknown>; msg?: string } = {
      level,
      obj: obj as Record<string, unknown>,
    };
    if (msg !== undefined) line.msg = msg;
    this.lines.push(line);
  }
  /** Lines whose object has `event` equal to the given one. */
  events(event: string): Record<string, unknown>[] {
    return this.lines.filter((l) => l.obj.event === event).map((l) => l.obj);
  }
  /** Decision lines of one connection. */
  decisions(cid?: string): Record<string, unknown>[] {
    return this.events('decision').filter((d) => cid === undefined || d.cid === cid);
  }
}

/**
 * A raw SMTP client on a socket: reads the exact reply lines off the wire, so tests see what
 * smtp-server really sent (enhanced codes included).
 */
export class RawClient {
  private buffer = '';
  private readonly waiters: (() => void)[] = [];
  readonly received: string[] = [];
  closed = false;

  private constructor(readonly socket: Socket) {
    socket.setEncoding('latin1');
    socket.on('data', (d: string) => {
      this.buffer += d;
      let nl = this.buffer.indexOf('\r\n');
      while (nl >= 0) {
        this.received.push(this.buffer.slice(0, nl));
        this.buffer = this.buffer.slice(nl + 2);
        nl = this.buffer.indexOf('\r\n');
      }
      this.wake();
    });
    socket.on('close', () => {
      this.closed = true;
      this.wake();
    });
    socket.on('error', () => {});
  }

  static open(port: number, host = '127.0.0.1'): Promise<RawClient> {
    return new Promise((resolve, reject) => {
      const s = connect({ port, host }, () => resolve(new RawClient(s)));
      s.once('error', reject);
    });
  }

  private wake(): void {
    for (const w of this.waiters.splice(0)) w();
  }

  private cursor = 0;

  /** The next complete reply (all its lines; the last one has a space after the code). */
  async reply(): Promise<string[]> {
    for (;;) {
      const lines: string[] = [];
      let i = this.cursor;
      while (i < this.received.length) {
        const line = this.received[i] ?? '';
        lines.push(line);
        i++;
        if (/^\d{3}(?: |$)/.test(line)) {
          this.cursor = i;
          return lines;
        }
      }
      if (this.closed) throw new Error(`connection closed; got ${JSON.stringify(this.received)}`);
      await new Promise<void>((r) => this.waiters.push(r));
    }
  }

  /** The last line of the next reply. */
  async line(): Promise<string> {
    const r = await this.reply();
    return r[r.length - 1] ?? '';
  }

  write(data: string | Buffer): void {
    this.socket.write(data);
  }

  /** Sends one command and returns the last line of its reply. */
  async cmd(line: string): Promise<string> {
    this.write(`${line}\r\n`);
    return this.line();
  }

  close(): void {
    this.socket.destroy();
  }
}

/** A fresh temporary folder, removed by the returned function. */
export async function tempDir(prefix: string): Promise<{ dir: string; remove: () => Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  return { dir, remove: () => rm(dir, { recursive: true, force: true }) };
}

/** Deterministic "randomness" for spool names: a counter. */
export function counterRandom(): (n: number) => Uint8Array {
  let i = 0;
  return (n) => {
    const b = Buffer.alloc(n);
    b.writeUInt32BE(++i, n - 4);
    return b;
  };
}

/**
 * A gateway on a free loopback port with its own spool folder, a memory log, a fixed clock and
 * counter randomness; `cleanups` gets what stops it and removes the folder.
 */
export async function testGateway(
  overrides: Partial<GatewayOptions> & Pick<GatewayOptions, 'chain'>,
  cleanups: (() => Promise<void>)[],
): Promise<{ gw: Gateway; log: MemoryLogger; spoolDir: string }> {
  const spool = await tempDir('mxguard-spool-');
  const log = new MemoryLogger();
  const gw = await startGateway({
    log,
    clock: new ManualClock(1_700_000_000_000),
    random: counterRandom(),
    spoolDir: spool.dir,
    port: 0,
    hostname: 'mx.example.com',
    ...overrides,
  });
  cleanups.push(async () => {
    await gw.close();
    await spool.remove();
  });
  return { gw, log, spoolDir: spool.dir };
}
