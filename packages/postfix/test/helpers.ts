import { connect, type Socket } from 'node:net';
import { accept, type Check, chain, defer, type Logger, next, reject, reply } from '@mxguard/core';
import type { PolicyServer } from '@mxguard/postfix';
import { formatRequest } from '@mxguard/postfix';

export { rcptRequest } from '../../../testing/postfix.js';

/** A logger that keeps its lines, to assert what was logged. */
export function memoryLogger(): Logger & { lines: { level: string; obj: object; msg?: string }[] } {
  const lines: { level: string; obj: object; msg?: string }[] = [];
  const at =
    (level: string) =>
    (obj: object, msg?: string): void => {
      lines.push({ level, obj, msg });
      if (lines.length > 10_000) lines.shift();
    };
  return { lines, debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error') };
}

/**
 * The recipient's local part says what to answer: reject@ (550 5.7.1), defer@ (451 4.7.1),
 * dip@ (DEFER_IF_PERMIT 4.7.1), ok@ (accept), boom@ (throws), anything else: next.
 */
export const byRecipient: Check = {
  name: 'by-recipient',
  stage: 'rcpt',
  run(s) {
    const local = (s.rcptTo ?? '').split('@')[0];
    switch (local) {
      case 'reject':
        return reject(reply(550, '5.7.1', 'go away'), 'test');
      case 'defer':
        return defer(reply(451, '4.7.1', 'come back later'), 'test');
      case 'dip':
        return defer(reply(450, '4.7.1', 'maybe later'), 'test', true);
      case 'ok':
        return accept('test');
      case 'boom':
        throw new Error('boom');
      default:
        return next();
    }
  },
};

export const testChain = chain([byRecipient]);

/** A policy client that sends one request at a time and reads `action=...` answers, as Postfix does. */
export class PolicyClient {
  private buf = '';
  private waiters: { resolve: (a: string) => void; reject: (e: Error) => void }[] = [];
  readonly closed: Promise<void>;

  private constructor(readonly socket: Socket) {
    socket.setEncoding('utf8');
    socket.on('data', (d: string) => {
      this.buf += d;
      for (;;) {
        const end = this.buf.indexOf('\n\n');
        if (end < 0) break;
        const block = this.buf.slice(0, end);
        this.buf = this.buf.slice(end + 2);
        const w = this.waiters.shift();
        if (w) w.resolve(block.startsWith('action=') ? block.slice(7) : `?${block}`);
      }
    });
    this.closed = new Promise((resolve) => {
      socket.on('close', () => {
        for (const w of this.waiters.splice(0)) w.reject(new Error('connection closed'));
        resolve();
      });
    });
    socket.on('error', () => {});
  }

  static open(server: PolicyServer): Promise<PolicyClient> {
    return new Promise((resolve, reject) => {
      const a = server.address;
      const s = 'path' in a ? connect(a.path) : connect(a.port, a.host);
      s.once('connect', () => resolve(new PolicyClient(s)));
      s.once('error', reject);
    });
  }

  /** Sends one request and waits for its answer (the text after `action=`). */
  ask(attrs: Record<string, string>): Promise<string> {
    return this.askRaw(formatRequest(attrs));
  }

  askRaw(raw: string | Buffer): Promise<string> {
    const p = new Promise<string>((resolve, reject) => this.waiters.push({ resolve, reject }));
    this.socket.write(raw);
    return p;
  }

  /** Expects one more answer without sending anything (for pipelined requests). */
  answer(): Promise<string> {
    return new Promise<string>((resolve, reject) => this.waiters.push({ resolve, reject }));
  }

  close(): void {
    this.socket.end();
  }
}
