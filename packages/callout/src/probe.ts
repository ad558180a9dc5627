import { Socket } from 'node:net';
import type { Probe, ProbeOptions, ProbeResult, ProbeStatus, ProbeTarget } from './types.js';

/** Limits of the default SMTP probe. */
export interface SmtpProbeOptions {
  /** Time to establish the TCP connection to one target. @default 10_000 */
  readonly connectTimeoutMs?: number;
  /**
   * Time to wait for each reply. RFC 5321 section 4.5.3.2 asks clients to wait minutes; a
   * callout cannot hold our own client that long, so it is short and the next MX is tried.
   * @default 15_000
   */
  readonly replyTimeoutMs?: number;
}

// Reply parsing is bounded: RFC 5321 section 4.5.3.1.5 limits a reply line to 512 octets; we
// allow twice that, at most 100 lines a reply and 64 KiB buffered, then give up on the host.
const MAX_LINE = 1024;
const MAX_LINES = 100;
const MAX_BUFFER = 65_536;
// We never pipeline (RFC 2920): one command, then its reply. So at most one reply (the greeting)
// can legitimately be waiting unread; a server that keeps answering what we never asked is
// flooding, and the queue it would grow is capped here, then the host is given up.
const MAX_QUEUED_REPLIES = 10;

interface SmtpReply {
  code: number;
  enhanced?: string;
  text: string;
}

class ProtocolError extends Error {}

/** One SMTP client connection with bounded, timed reply reading. */
class Conversation {
  private buf = '';
  private lines: string[] = [];
  private readonly replies: SmtpReply[] = [];
  private waiter: { resolve: (r: SmtpReply) => void; reject: (e: Error) => void } | undefined;
  private failure: Error | undefined;

  constructor(
    private readonly socket: Socket,
    private readonly replyTimeoutMs: number,
  ) {
    socket.setEncoding('latin1');
    socket.on('data', (d: string) => this.onData(d));
    socket.on('error', (e) => this.fail(e));
    socket.on('close', () => this.fail(new Error('connection closed')));
  }

  private fail(e: Error): void {
    this.failure ??= e;
    const w = this.waiter;
    this.waiter = undefined;
    w?.reject(this.failure);
  }

  private onData(d: string): void {
    this.buf += d;
    if (this.buf.length > MAX_BUFFER) {
      this.abort(new ProtocolError('reply too long'));
      return;
    }
    for (let i = this.buf.indexOf('\n'); i >= 0; i = this.buf.indexOf('\n')) {
      const line = this.buf.slice(0, i).replace(/\r$/, '');
      this.buf = this.buf.slice(i + 1);
      if (line.length > MAX_LINE) {
        this.abort(new ProtocolError('reply line too long'));
        return;
      }
      if (!/^[2-5]\d\d([ -]|$)/.test(line)) {
        this.abort(new ProtocolError('malformed reply'));
        return;
      }
      this.lines.push(line);
      if (this.lines.length > MAX_LINES) {
        this.abort(new ProtocolError('too many reply lines'));
        return;
      }
      if (line.charAt(3) !== '-') {
        const code = Number(line.slice(0, 3));
        const text = this.lines.map((l) => l.slice(4)).join(' ');
        this.lines = [];
        const m = /^([245]\.\d{1,3}\.\d{1,3})\s/.exec(`${text} `);
        const r: SmtpReply = m?.[1] ? { code, enhanced: m[1], text } : { code, text };
        const w = this.waiter;
        this.waiter = undefined;
        if (w) w.resolve(r);
        else {
          this.replies.push(r);
          if (this.replies.length > MAX_QUEUED_REPLIES) {
            this.abort(new ProtocolError('too many unsolicited replies'));
            return;
          }
        }
      }
    }
    if (this.buf.length > MAX_LINE) this.abort(new ProtocolError('reply line too long'));
  }

  abort(e: Error): void {
    this.fail(e);
    // What the host said before we gave up on it is not an answer to anything we ask next.
    this.replies.length = 0;
    this.socket.destroy();
  }

  read(): Promise<SmtpReply> {
    const queued = this.replies.shift();
    if (queued) return Promise.resolve(queued);
    if (this.failure) return Promise.reject(this.failure);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(
        () => this.abort(new Error('timed out waiting for a reply')),
        this.replyTimeoutMs,
      );
      this.waiter = {
        resolve: (r) => {
          clearTimeout(timer);
          resolve(r);
        },
        reject: (e) => {
          clearTimeout(timer);
          reject(e);
        },
      };
    });
  }

  async command(line: string): Promise<SmtpReply> {
    if (this.failure) throw this.failure;
    this.socket.write(`${line}\r\n`);
    return this.read();
  }

  /** Sends QUIT without waiting long for its answer, then closes. */
  quit(): void {
    if (!this.failure && this.socket.writable) this.socket.end('QUIT\r\n');
    this.socket.destroySoon?.();
    setTimeout(() => this.socket.destroy(), 1000).unref();
  }
}

function connect(target: ProbeTarget, port: number, timeoutMs: number, signal: AbortSignal): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = new Socket();
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error('connect timed out'));
    }, timeoutMs);
    const onAbort = () => {
      clearTimeout(timer);
      socket.destroy();
      reject(new Error('probe aborted'));
    };
    signal.addEventListener('abort', onAbort, { once: true });
    socket.once('error', (e) => {
      clearTimeout(timer);
      signal.removeEventListener('abort', onAbort);
      reject(e);
    });
    socket.connect({ host: target.address, port }, () => {
      clearTimeout(timer);
      signal.removeEventListener('abort', onAbort);
      resolve(socket);
    });
  });
}

/** Printable, one line, bounded: remote text may end up in our log and reply. */
function clean(s: string): string {
  return s.replace(/[\x00-\x1f\x7f-\uffff]/g, '?').slice(0, 200);
}

function said(t: ProbeTarget, r: SmtpReply, cmd: string): string {
  return clean(`host ${t.host}[${t.address}] said: ${r.code} ${r.text} (in reply to ${cmd} command)`);
}

/**
 * Whether a 5xx to RCPT TO says the mailbox does not exist: an enhanced code of class 5.1.x
 * (RFC 3463 "addressing status"), or without one, 550/551/553. A 5.7.x (policy: our IP is
 * blocked) proves nothing about the address.
 */
export function meansUnknownUser(code: number, enhanced: string | undefined): boolean {
  if (code < 500) return false;
  if (enhanced) return enhanced.startsWith('5.1.');
  return code === 550 || code === 551 || code === 553;
}

/** One conversation with one target; `{ next }` means: try the next target. */
async function converse(
  conv: Conversation,
  target: ProbeTarget,
  address: string,
  o: ProbeOptions,
): Promise<ProbeResult | { next: ProbeStatus; text: string }> {
  const greet = await conv.read();
  if (greet.code !== 220) return { next: 'temporary', text: said(target, greet, 'initial protocol') };
  let hello = await conv.command(`EHLO ${o.helo}`);
  if (hello.code >= 500) hello = await conv.command(`HELO ${o.helo}`);
  if (hello.code !== 250) return { next: 'temporary', text: said(target, hello, 'HELO') };
  const mail = await conv.command(`MAIL FROM:<${o.sender}>`);
  if (mail.code >= 500) return { next: 'inconclusive', text: said(target, mail, 'MAIL FROM') };
  if (mail.code >= 300) return { next: 'temporary', text: said(target, mail, 'MAIL FROM') };
  const rcpt = await conv.command(`RCPT TO:<${address}>`);
  const text = said(target, rcpt, 'RCPT TO');
  if (rcpt.code >= 200 && rcpt.code < 300) return { status: 'exists', text };
  if (rcpt.code >= 500)
    return { status: meansUnknownUser(rcpt.code, rcpt.enhanced) ? 'unknown-user' : 'inconclusive', text };
  return { next: 'temporary', text };
}

/**
 * The default probe: an SMTP conversation with each target in turn (EHLO, MAIL FROM, RCPT TO, then
 * QUIT; never DATA, so nothing is ever delivered), until one answers RCPT TO. Connection failures,
 * timeouts and 4xx move on to the next target; when all fail the result is `temporary`, or
 * `inconclusive` if some host refused the probe itself.
 */
export function smtpProbe(options: SmtpProbeOptions = {}): Probe {
  const connectTimeoutMs = options.connectTimeoutMs ?? 10_000;
  const replyTimeoutMs = options.replyTimeoutMs ?? 15_000;
  return async (targets, address, o) => {
    if (!isProbeable(address)) return { status: 'inconclusive', text: 'address cannot be probed' };
    if (!/^[A-Za-z0-9.-]+$/.test(o.helo) || (o.sender !== '' && !isProbeable(o.sender))) {
      return { status: 'inconclusive', text: 'bad probe helo or sender' };
    }
    let last: ProbeStatus = 'temporary';
    const texts: string[] = [];
    for (const target of targets) {
      if (o.signal.aborted) break;
      let socket: Socket;
      try {
        socket = await connect(target, o.port, connectTimeoutMs, o.signal);
      } catch (err) {
        texts.push(clean(`connect to ${target.host}[${target.address}]: ${(err as Error).message}`));
        continue;
      }
      const conv = new Conversation(socket, replyTimeoutMs);
      const onAbort = () => conv.abort(new Error('probe time is up'));
      o.signal.addEventListener('abort', onAbort, { once: true });
      try {
        const r = await converse(conv, target, address, o);
        if ('status' in r) return r;
        if (r.next === 'inconclusive') last = 'inconclusive';
        texts.push(r.text);
      } catch (err) {
        texts.push(clean(`${target.host}[${target.address}]: ${(err as Error).message}`));
      } finally {
        o.signal.removeEventListener('abort', onAbort);
        conv.quit();
      }
    }
    return { status: last, text: clean(texts.join('; ') || 'no target answered') };
  };
}

/**
 * True when an address can be put in `RCPT TO:<...>` safely: printable ASCII only (we do not
 * negotiate SMTPUTF8), no spaces, brackets, quotes or control characters (so a forged MAIL FROM can never inject SMTP commands into our probe), an
 * `@` with a non-empty local part and domain, at most 254 octets (RFC 5321 path limit).
 */
export function isProbeable(address: string): boolean {
  if (address.length === 0 || address.length > 254) return false;
  if (!/^[\x21-\x7e]+$/.test(address) || /[<>()[\]\\,;:"]/.test(address)) return false;
  const at = address.lastIndexOf('@');
  return at > 0 && at < address.length - 1;
}
