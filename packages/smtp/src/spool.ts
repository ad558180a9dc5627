import { randomBytes } from 'node:crypto';
import { open, readFile, rename, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import type { Clock, Session } from '@mxguard/core';
import { reply as makeReply } from '@mxguard/core';
import type { SMTPServerDataStream } from 'smtp-server';
import { replyError } from './reply.js';

/**
 * The envelope written as the first line of a spool file. Version 1.
 * Everything a delivery agent needs that is not in the message itself.
 */
export interface SpoolEnvelope {
  /** The format's version; a reader refuses another. */
  readonly version: 1;
  /** The file name without `.msg`: `<ms since epoch, 13 digits>-<16 hex random>`. */
  readonly id: string;
  /** When the message was accepted (ISO 8601, from the injected clock). */
  readonly receivedAt: string;
  /** Our host name, as in the greeting. */
  readonly receivedBy: string;
  /** The client that sent the message. */
  readonly client: {
    /** Its IP address. */
    readonly address: string;
    /** Its TCP port. */
    readonly port?: number;
    /** The name it gave in HELO or EHLO. */
    readonly helo?: string;
    /** Forward-confirmed PTR name, when the enrich step found one. */
    readonly name?: string;
  };
  /** MAIL FROM without angle brackets; '' is the null sender. */
  readonly mailFrom: string;
  /** The accepted recipients, in order. */
  readonly rcptTo: readonly string[];
  /** The client used STARTTLS. */
  readonly tls: boolean;
  /** smtp-server's connection id, to find the conversation in the log. */
  readonly cid: string;
  /**
   * Our `Received:` trace header for the message (RFC 5321 section 4.4, with CRLF), which a delivery
   * agent writes before the message bytes: the bytes after the envelope line stay exactly the
   * client's, and the header is not lost.
   */
  readonly received?: string;
}

/** Options of {@link spoolMessage}. */
export interface SpoolOptions {
  /** The spool folder; must exist. Temporary files are written there too, so the rename is atomic. */
  readonly dir: string;
  /** The clock of the file names and `receivedAt`. */
  readonly clock: Clock;
  /** Randomness for file names. @default crypto.randomBytes */
  readonly random?: (bytes: number) => Uint8Array;
  /** Our host name for the envelope. */
  readonly hostname: string;
  /** Our Received header for the message, kept in the envelope (see {@link SpoolEnvelope.received}). */
  readonly received?: string;
  /**
   * Makes the renames in `dir` durable; resolves only once a folder fsync that started after the
   * call has finished. A gateway passes one {@link groupDirSync} for all its messages, so the
   * messages that arrive together share one fsync of the folder (group commit).
   * @default one fsync of the folder for this message
   */
  readonly syncDir?: () => Promise<void>;
}

/** The file suffix of a spooled message; temporary files start with `.tmp-` and never end with it. */
export const SPOOL_SUFFIX = '.msg';

/** A unique, sortable spool id: time first (so `ls` lists in arrival order), then 64 random bits. */
export function spoolId(clock: Clock, random: (bytes: number) => Uint8Array = randomBytes): string {
  const t = String(Math.max(0, Math.floor(clock.now()))).padStart(13, '0');
  return `${t}-${Buffer.from(random(8)).toString('hex')}`;
}

/**
 * Writes one accepted message to the spool: `<envelope JSON>\n<message bytes>` in one file.
 *
 * Atomic and durable: written to `.tmp-<id>` in the same folder, fsynced, renamed to `<id>.msg`,
 * then the folder is fsynced so the rename survives a crash. Only after all that does the promise
 * resolve, and only then does the gateway answer 250: nothing we accept is lost, and a reader never
 * sees half a file. On any failure the temporary file is removed and the error is thrown (the
 * gateway answers `451 4.3.0`). The stream is always read to its end, so smtp-server can answer.
 * Over smtp-server's `size` limit the message is discarded and `552 5.3.4` is thrown.
 */
export async function spoolMessage(
  stream: SMTPServerDataStream,
  session: Session,
  cid: string,
  options: SpoolOptions,
): Promise<{
  /** The message's spool id (its file name without `.msg`), also the queue id of the 250. */
  id: string;
  /** The spool file's path. */
  path: string;
  /** The message's bytes (without the envelope line). */
  bytes: number;
}> {
  const id = spoolId(options.clock, options.random);
  const envelope: SpoolEnvelope = {
    version: 1,
    id,
    receivedAt: new Date(options.clock.now()).toISOString(),
    receivedBy: options.hostname,
    client: {
      address: session.clientAddress,
      ...(session.clientPort !== undefined ? { port: session.clientPort } : {}),
      ...(session.helo !== undefined ? { helo: session.helo } : {}),
      ...(session.rdns?.verified ? { name: session.rdns.verified } : {}),
    },
    mailFrom: session.mailFrom ?? '',
    rcptTo: [...(session.recipients ?? [])],
    tls: !!session.tls,
    cid,
    ...(options.received !== undefined ? { received: options.received } : {}),
  };
  const tmp = join(options.dir, `.tmp-${id}`);
  const final = join(options.dir, `${id}${SPOOL_SUFFIX}`);
  let fh: Awaited<ReturnType<typeof open>> | undefined;
  let failure: unknown;
  try {
    fh = await open(tmp, 'wx', 0o600);
  } catch (err) {
    failure = err;
  }
  let bytes = 0;
  // Read the whole stream whatever happens: smtp-server answers only once it has ended.
  await new Promise<void>((resolve) => {
    let chain: Promise<unknown> = fh ? fh.write(`${JSON.stringify(envelope)}\n`) : Promise.resolve();
    chain = chain.catch((err: unknown) => {
      failure ??= err;
    });
    stream.on('data', (chunk: Buffer) => {
      if (failure !== undefined || stream.sizeExceeded || !fh) return;
      bytes += chunk.length;
      const handle = fh;
      stream.pause();
      chain = chain
        .then(() => (failure === undefined ? handle.write(chunk) : undefined))
        .catch((err: unknown) => {
          failure ??= err;
        })
        .finally(() => stream.resume());
    });
    stream.on('end', () => {
      chain.then(() => resolve());
    });
    stream.on('error', (err) => {
      failure ??= err;
      chain.then(() => resolve());
    });
  });
  try {
    if (failure !== undefined) throw failure;
    if (stream.sizeExceeded)
      throw replyError(makeReply(552, '5.3.4', 'Message size exceeds fixed maximum message size'));
    if (!fh) throw new Error('spool file not opened');
    await fh.sync();
    await fh.close();
    fh = undefined;
    await rename(tmp, final);
    await (options.syncDir ? options.syncDir() : syncDir(options.dir));
    return { id, path: final, bytes };
  } catch (err) {
    await fh?.close().catch(() => {});
    await unlink(tmp).catch(() => {});
    throw err;
  }
}

/**
 * Group commit of a spool folder: every caller's promise resolves once a folder fsync that started
 * after its call has finished, so a rename made before the call is durable when it resolves. While
 * one fsync runs, the callers that arrive share the next one: at most one fsync runs and one waits,
 * however many messages arrive together, so the disk's pace, not one fsync a message, sets the
 * throughput. (The same idea as a database's group commit of its log.)
 */
export function groupDirSync(
  dir: string,
  sync: (dir: string) => Promise<void> = syncDir,
): () => Promise<void> {
  let running: Promise<void> | undefined;
  let waiting: Promise<void> | undefined;
  const start = (): Promise<void> => {
    const p: Promise<void> = sync(dir).finally(() => {
      if (running === p) running = undefined;
    });
    running = p;
    return p;
  };
  return () => {
    if (running === undefined) return start();
    // The running fsync may have started before this caller's rename: wait for the next one.
    waiting ??= running
      .catch(() => {})
      .then(() => {
        waiting = undefined;
        return start();
      });
    return waiting;
  };
}

/** fsync a folder so a rename in it is durable (POSIX; a no-op where folders cannot be opened). */
async function syncDir(dir: string): Promise<void> {
  let h: Awaited<ReturnType<typeof open>> | undefined;
  try {
    h = await open(dir, 'r');
    await h.sync();
  } catch {
    // Some platforms cannot fsync a directory; the file itself is already synced.
  } finally {
    await h?.close().catch(() => {});
  }
}

/** Splits a spool file into its envelope and the message bytes exactly as received. */
export function parseSpoolFile(content: Buffer): {
  /** The first line, parsed. */
  envelope: SpoolEnvelope;
  /** The message as the client sent it (without the envelope line). */
  message: Buffer;
} {
  const nl = content.indexOf(0x0a);
  if (nl < 0) throw new TypeError('not a spool file: no envelope line');
  const envelope = JSON.parse(content.subarray(0, nl).toString('utf8')) as SpoolEnvelope;
  if (envelope.version !== 1) throw new TypeError(`unknown spool file version ${String(envelope.version)}`);
  return { envelope, message: content.subarray(nl + 1) };
}

/** Reads and parses one spool file. */
export async function readSpoolFile(path: string): Promise<{
  /** The first line, parsed. */
  envelope: SpoolEnvelope;
  /** The message as the client sent it (without the envelope line). */
  message: Buffer;
}> {
  return parseSpoolFile(await readFile(path));
}
