import { connect as netConnect, type Socket } from 'node:net';
import { type Readable, Transform } from 'node:stream';
import { type Probe, smtpProbe } from '@mxguard/callout';
import type { Reply, Session } from '@mxguard/core';
import { reply as makeReply } from '@mxguard/core';
import SMTPConnection from 'nodemailer/lib/smtp-connection';
import type { SMTPServerDataStream } from 'smtp-server';
import type { Delivery } from './adapter.js';
import { replyError } from './reply.js';

/** Where accepted mail goes on: an SMTP or LMTP server, on TCP or (LMTP) a UNIX socket. */
export interface RelayTarget {
  /** SMTP or LMTP (per-recipient replies after DATA). */
  readonly protocol: 'smtp' | 'lmtp';
  /** Host and port for TCP. */
  readonly host?: string;
  /** The TCP port. */
  readonly port?: number;
  /** Path of a UNIX socket (LMTP, as Dovecot's `lmtp` listener). */
  readonly path?: string;
}

/**
 * Reads `smtp://HOST:PORT`, `lmtp://HOST:PORT` or `lmtp:/path/to/socket` (also `lmtp:unix:/path`).
 * IPv6 hosts in brackets (`smtp://[::1]:10025`). Throws a TypeError that says what is wrong.
 */
export function parseRelayTarget(spec: string): RelayTarget {
  const m = /^(smtp|lmtp):(.*)$/i.exec(spec.trim());
  if (!m) throw new TypeError(`relay "${spec}": expected smtp://HOST:PORT, lmtp://HOST:PORT or lmtp:/SOCKET`);
  const protocol = (m[1] as string).toLowerCase() as 'smtp' | 'lmtp';
  const rest = m[2] as string;
  if (!rest.startsWith('//')) {
    const path = rest.replace(/^unix:/i, '');
    if (protocol !== 'lmtp' || !path.startsWith('/'))
      throw new TypeError(`relay "${spec}": a UNIX socket is an absolute path after lmtp:`);
    return { protocol, path };
  }
  const hp = /^\/\/(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):(\d{1,5})\/?$/.exec(rest);
  if (!hp) throw new TypeError(`relay "${spec}": expected ${protocol}://HOST:PORT`);
  const port = Number(hp[2]);
  if (port < 1 || port > 65535) throw new TypeError(`relay "${spec}": port out of range`);
  return { protocol, host: (hp[1] as string).replace(/^\[|\]$/g, ''), port };
}

/** Options of {@link relayDelivery}. */
export interface RelayOptions {
  /** The server accepted mail goes on to. */
  readonly target: RelayTarget;
  /** Our name in EHLO/LHLO to the downstream. */
  readonly hostname: string;
  /** Prepends our Received header (see `receivedHeader`); the message otherwise goes on byte for byte. */
  readonly header?: (delivery: Delivery) => string;
  /** Time to connect and for each reply of the downstream. @default 30000 */
  readonly timeoutMs?: number;
  /** Downstream connections kept open between messages (reset with RSET). @default 16 */
  readonly maxIdle?: number;
  /** How long an unused downstream connection is kept, ms. @default 10000 */
  readonly idleMs?: number;
}

/** A downstream refusal or failure, as the reply our client gets. */
export function downstreamReply(err: unknown): Reply {
  const e = err as { responseCode?: unknown; response?: unknown };
  const code = typeof e?.responseCode === 'number' ? e.responseCode : 0;
  const response = typeof e?.response === 'string' ? e.response : '';
  // The downstream's own words, without its code (`550 5.1.1 <x>: ...` -> `<x>: ...`).
  const text = response
    .replace(/^\d{3}[ -]/, '')
    .replace(/^[245]\.\d{1,3}\.\d{1,3} /, '')
    .slice(0, 300);
  const enhanced = /^\d{3}[ -]([245]\.\d{1,3}\.\d{1,3}) /.exec(response)?.[1];
  if (code >= 500 && code < 600) {
    // Refused for good by the MTA behind us: the client hears it now, at SMTP time (no bounce).
    return makeReply(code, enhanced?.startsWith('5.') ? enhanced : '5.0.0', text || 'Refused downstream');
  }
  if (code >= 400 && code < 500) {
    return makeReply(code, enhanced?.startsWith('4.') ? enhanced : '4.0.0', text || 'Try again later');
  }
  // Unreachable, timed out, dropped: temporary, never a 5xx (DESIGN principle 2).
  return makeReply(451, '4.4.1', 'Downstream mail server unavailable, try again later');
}

function socketTo(target: RelayTarget): Socket | undefined {
  return target.path ? netConnect(target.path) : undefined;
}

/**
 * A `deliver` for the smtp-server adapter that hands each accepted message on to the mail server
 * behind us (a before-queue proxy, as Postfix's smtpd_proxy_filter): one downstream transaction a
 * message with the same envelope, opened once the client's DATA has begun, and our `250` only
 * after the downstream's own `250` (so nothing the client sees accepted is lost, and a refusal
 * reaches the client while it is connected: no bounce is ever generated). The downstream's 5xx is
 * the client's refusal with the downstream's code and text; its 4xx, a timeout or an unreachable
 * downstream is a 4xx.
 *
 * LMTP answers DATA once per recipient: all accepted is a 250, all refused for good a 5xx, and any
 * other mix a 451 (the client retries: a recipient may get the message twice, none loses it).
 *
 * Uses nodemailer's SMTPConnection (SMTP and LMTP, dot-stuffing, SIZE and 8BITMIME).
 */
export function relayDelivery(options: RelayOptions): RelayDelivery {
  const { target } = options;
  const timeoutMs = options.timeoutMs ?? 30_000;
  const maxIdle = options.maxIdle ?? 16;
  const idleMs = options.idleMs ?? 10_000;
  // Connections that finished a transaction and were reset, kept for the next message (as
  // Postfix's scache), each closed after idleMs. Bounded by maxIdle.
  const idle: { conn: SMTPConnection; timer: NodeJS.Timeout }[] = [];
  let closed = false;

  const usable = (c: SMTPConnection) => {
    const sock = (c as unknown as { _socket?: Socket })._socket;
    return !c.destroyed && !!sock && !sock.destroyed && sock.writable;
  };

  function acquire(): Promise<SMTPConnection> {
    for (let e = idle.pop(); e; e = idle.pop()) {
      clearTimeout(e.timer);
      if (usable(e.conn)) return Promise.resolve(e.conn);
      e.conn.close();
    }
    return new Promise((resolve, reject) => {
      const socket = socketTo(target);
      const conn = new SMTPConnection({
        lmtp: target.protocol === 'lmtp',
        ...(target.host !== undefined ? { host: target.host, port: target.port } : {}),
        ...(socket ? { connection: socket } : {}),
        name: options.hostname,
        ignoreTLS: true,
        connectionTimeout: timeoutMs,
        greetingTimeout: timeoutMs,
        socketTimeout: timeoutMs,
        logger: false,
      });
      // An idle connection the downstream closes must not crash the process; a failure during a
      // transaction reaches that transaction through send's callback.
      conn.on('error', () => {});
      // A connection that fails reports it as an 'error' event, not through connect's callback.
      const failed = (err: unknown) => {
        conn.close();
        reject(err);
      };
      conn.once('error', failed);
      conn.connect((err) => {
        conn.off('error', failed);
        if (err) failed(err);
        else resolve(conn);
      });
    });
  }

  function release(conn: SMTPConnection): void {
    if (closed || idle.length >= maxIdle) {
      conn.close();
      return;
    }
    conn.reset((err) => {
      if (err || closed || idle.length >= maxIdle || !usable(conn)) {
        conn.close();
        return;
      }
      const entry = {
        conn,
        timer: setTimeout(() => {
          const i = idle.indexOf(entry);
          if (i >= 0) idle.splice(i, 1);
          conn.quit();
        }, idleMs),
      };
      entry.timer.unref();
      idle.push(entry);
    });
  }

  const deliver = (stream: SMTPServerDataStream, delivery: Delivery): Promise<string | undefined> =>
    new Promise((resolve, reject) => {
      const session = delivery.session;
      let settled = false;
      // The message as it goes on: our header, then the client's bytes. Over the size limit the
      // stream fails at its end, so the downstream never gets the final dot and keeps nothing.
      const body = new Transform({
        transform(chunk, _enc, cb) {
          cb(null, chunk);
        },
        flush(cb) {
          cb(stream.sizeExceeded ? new Error('message size exceeds the limit') : null);
        },
      });
      let conn: SMTPConnection | undefined;
      const finish = (err: unknown, id?: string) => {
        if (settled) return;
        settled = true;
        if (err === undefined) {
          if (conn) release(conn);
          return resolve(id);
        }
        conn?.close();
        // Read the client's message to its end whatever happened: smtp-server answers only then.
        stream.unpipe(body);
        stream.resume();
        const done = () => reject(replyError(downstreamReply(err)));
        if (stream.readableEnded) done();
        else stream.once('end', done).once('error', done);
      };
      acquire().then(
        (c) => {
          conn = c;
          const header = options.header?.(delivery);
          if (header) body.write(header);
          (stream as Readable).pipe(body);
          c.send(
            {
              from: session.mailFrom ?? '',
              to: [...(session.recipients ?? [])],
              use8BitMime: true,
            },
            body,
            (sendErr, info) => {
              if (sendErr) {
                if (stream.sizeExceeded)
                  return finish({
                    responseCode: 552,
                    response: '552 5.3.4 Message size exceeds fixed limit',
                  });
                return finish(sendErr);
              }
              const refused = info.rejectedErrors ?? [];
              if (refused.length > 0) {
                const permanent = refused.every((e) => (e.responseCode ?? 0) >= 500);
                if (info.accepted.length === 0 && permanent) return finish(refused[0]);
                return finish({
                  responseCode: 451,
                  response: `451 4.3.0 Delivered to ${info.accepted.length} of ${
                    info.accepted.length + refused.length
                  } recipients downstream; try again later`,
                });
              }
              finish(undefined, /queued as ([A-Za-z0-9]+)/.exec(info.response)?.[1] ?? 'relayed');
            },
          );
        },
        (err: unknown) => finish(err),
      );
    });

  return Object.assign(deliver, {
    close(): void {
      closed = true;
      for (const e of idle.splice(0)) {
        clearTimeout(e.timer);
        e.conn.quit();
      }
    },
  });
}

/** {@link relayDelivery}'s `deliver`, with `close` for the connections it keeps open. */
export type RelayDelivery = ((
  stream: SMTPServerDataStream,
  delivery: Delivery,
) => Promise<string | undefined>) & {
  /** Closes the idle downstream connections; call when the gateway stops. */
  close(): void;
};

/** Options of {@link downstreamRecipientCheck}. */
export interface RecipientCheckOptions {
  /** The server asked whether a recipient exists. */
  readonly target: RelayTarget;
  /** Our name in EHLO to the downstream. */
  readonly hostname: string;
  /** Whole probe time. @default 10000 */
  readonly timeoutMs?: number;
  /** Replaces the SMTP conversation (tests). @default callout's smtpProbe */
  readonly probe?: Probe;
}

/**
 * Asks the downstream SMTP server, at RCPT time, whether it takes a recipient (EHLO, MAIL FROM with
 * the client's own sender, RCPT TO, QUIT; never DATA), so an unknown user is refused before the
 * client sends the message: `550 5.1.1` with the downstream's words. Anything else (accepted, a
 * temporary failure, a refusal that is not about the mailbox) lets the recipient through: the
 * downstream still decides at DATA. SMTP targets only: LMTP servers are asked at DATA.
 */
export function downstreamRecipientCheck(options: RecipientCheckOptions) {
  const { target } = options;
  if (target.protocol !== 'smtp' || target.host === undefined)
    throw new TypeError('recipient checks at RCPT need an smtp:// relay');
  const probe = options.probe ?? smtpProbe({ connectTimeoutMs: options.timeoutMs ?? 10_000 });
  const timeoutMs = options.timeoutMs ?? 10_000;
  return async (session: Session): Promise<Reply | undefined> => {
    const rcpt = session.rcptTo;
    if (!rcpt) return undefined;
    const r = await probe([{ host: target.host as string, address: target.host as string }], rcpt, {
      port: target.port ?? 25,
      helo: options.hostname,
      sender: session.mailFrom ?? '',
      signal: AbortSignal.timeout(timeoutMs),
    });
    if (r.status !== 'unknown-user') return undefined;
    // The downstream's own words (`host h[a] said: 550 5.1.1 TEXT (in reply to RCPT TO command)`).
    const said = /said: \d{3} (?:5\.\d{1,3}\.\d{1,3} )?(.*?)(?: \(in reply to [^)]*\))?$/.exec(r.text)?.[1];
    return makeReply(550, '5.1.1', said || `<${rcpt}>: Recipient address rejected: unknown downstream`);
  };
}
