import type { Logger } from '@mxguard/core';
import { pino } from 'pino';
import { type Privacy, Redactor } from './privacy.js';

export type LogLevel = 'debug' | 'info' | 'warn' | 'error';
export type LogFormat = 'json' | 'text';

/** How the CLI logs: `--log-level`, `--log-format`, `--log-file`, `--log-privacy`. */
export interface LogSettings {
  readonly level: LogLevel;
  readonly format: LogFormat;
  /** A file to append to; default stderr. */
  readonly file?: string | undefined;
  readonly privacy: Privacy;
  /** The program name of text lines, as syslog's tag: `mxguard/serve`. */
  readonly name: string;
  /** Write each line before returning (tests, short commands). @default false: buffered, non-blocking */
  readonly sync?: boolean;
  /**
   * Bytes of lines held while the destination is behind (a stalled disk or pipe); past it, lines
   * are dropped and counted, and a line says how many once a second ({@link LOG_BEHIND_MS}).
   * @default 67_108_864 (64 MiB)
   */
  readonly maxBuffered?: number;
}

/** Bytes of log lines held while the destination is behind, by default. */
export const LOG_BUFFER_BYTES = 64 * 1024 * 1024;
/** How often, while lines are being dropped, a line says how many were. */
export const LOG_BEHIND_MS = 1000;

/** A pino logger as the core's Logger, with what the process needs to end and rotate it. */
export interface CliLog {
  readonly log: Logger;
  readonly redactor: Redactor;
  /** Reopens the log file (after logrotate moved it); nothing for stderr. */
  reopen(): void;
  /** Writes out what is buffered. */
  flush(): void;
}

const q = (v: unknown) => (typeof v === 'string' ? v : JSON.stringify(v));

function angle(v: unknown): string {
  return `<${typeof v === 'string' ? v : ''}>`;
}

/**
 * One decision as a Postfix-like line: what was done, at which stage, to whom, the reply, then the
 * envelope, the check that decided, how many links ran (`steps=`) and the trace the JSON line
 * carries (`check:action` each, `(warn)` for a link in warn mode: by default the steps that said
 * something, every step with `--log-trace full`). Like smtpd's `NOQUEUE: reject: RCPT from host[addr]: 554 5.7.1 <rcpt>: text; from=<>
 * to=<> proto=ESMTP helo=<>`.
 */
function decisionText(o: Record<string, unknown>): string {
  const would = typeof o.would === 'string' ? `would ${o.would} (mode warn)` : undefined;
  const what = would ?? String(o.action);
  const stage = String(o.stage ?? '').toUpperCase();
  const reply = o.code !== undefined ? ` ${o.code} ${o.enhanced ?? ''} ${o.text ?? ''}`.trimEnd() : '';
  const trace = Array.isArray(o.trace)
    ? (o.trace as { check: string; action: string; warn?: boolean }[])
        .map((s) => `${s.check}:${s.action}${s.warn ? '(warn)' : ''}`)
        .join(',')
    : '';
  const parts = [
    `${o.session ?? '-'}: ${what}: ${stage} from [${o.client ?? ''}]:${reply};`,
    `from=${angle(o.from)}`,
    `to=${angle(o.to)}`,
    `helo=${angle(o.helo)}`,
  ];
  if (o.check !== undefined) parts.push(`check=${o.check}`);
  if (o.reason !== undefined) parts.push(`reason=${JSON.stringify(o.reason)}`);
  if (typeof o.steps === 'number') parts.push(`steps=${o.steps}`);
  if (trace) parts.push(`trace=${trace}`);
  return parts.join(' ');
}

const SKIP = new Set(['level', 'time', 'msg', 'pid', 'hostname', 'name']);

/** Turns one pino JSON line into the text format: `time tag[pid]: level: msg key=value ...`. */
export function textLine(json: string, name: string): string {
  let o: Record<string, unknown>;
  try {
    o = JSON.parse(json) as Record<string, unknown>;
  } catch {
    return json;
  }
  const head = `${o.time} ${name}[${o.pid ?? process.pid}]:`;
  if (o.event === 'decision') return `${head} ${decisionText(o)}\n`;
  const rest = Object.entries(o)
    .filter(([k, v]) => !SKIP.has(k) && v !== undefined)
    .map(([k, v]) => `${k}=${q(v)}`);
  const msg = typeof o.msg === 'string' ? ` ${o.msg}` : '';
  return `${head} ${o.level}:${msg}${rest.length ? ` ${rest.join(' ')}` : ''}\n`;
}

/** A destination that takes lines. */
interface Lines {
  write(line: string): unknown;
}

/** A destination that takes bytes (sonic-boom in `contentMode: 'buffer'`). */
interface Bytes {
  write(bytes: Buffer): unknown;
}

/** Lines held for a batch (see {@link batched}). */
interface Batch extends Lines {
  /** Hands what is held on at once (before a synchronous flush). */
  flush(): void;
}

/** The batches of this process, handed on when it exits (see {@link batched}). */
const batches = new Set<() => void>();

/**
 * Lines gathered and handed to `dest` together, at most {@link BATCH_MS} later: one write of the
 * destination (a system call in a worker thread) for the lines of that time, not one a line. At
 * thousands of decisions a second that write is most of what a line costs. Every line goes
 * through it, so their order is kept. Nothing is lost at exit: the timer holds the process until
 * it has handed its lines on, and at `exit` (process.exit) they are handed on before the
 * destination's own last synchronous flush.
 *
 * Each line is encoded into the batch's bytes as it comes (while it is still in the CPU's cache)
 * and the destination takes bytes (sonic-boom's `contentMode: 'buffer'`): joining the strings of
 * a batch and handing on the text made four passes over it (the join, sonic-boom's length, the
 * write's encoding, and sonic-boom encoding it again to know what was written), about 3 µs a line
 * (docs/PERFORMANCE.md, fifth pass).
 */
function batched(dest: Bytes): Batch {
  // The batch's bytes: full chunks, then the one being filled.
  let full: Buffer[] = [];
  let fullBytes = 0;
  let buf = Buffer.allocUnsafe(BATCH_CHUNK);
  let used = 0;
  let timer: NodeJS.Timeout | undefined;
  const flush = () => {
    if (timer) clearTimeout(timer);
    timer = undefined;
    if (used === 0 && full.length === 0) return;
    const last = buf.subarray(0, used);
    const bytes = full.length === 0 ? last : Buffer.concat([...full, last], fullBytes + used);
    // The destination keeps the bytes until written: the next lines go to a new buffer.
    full = [];
    fullBytes = 0;
    buf = Buffer.allocUnsafe(BATCH_CHUNK);
    used = 0;
    dest.write(bytes);
  };
  if (batches.size === 0) {
    // First, before the destinations' own exit handlers write out what they hold.
    process.prependListener('exit', () => {
      for (const f of batches) f();
    });
  }
  batches.add(flush);
  return {
    write(line) {
      // UTF-8 takes at most 3 bytes for each UTF-16 unit of the string.
      const most = line.length * 3;
      if (used + most > buf.length) {
        full.push(buf.subarray(0, used));
        fullBytes += used;
        buf = Buffer.allocUnsafe(Math.max(BATCH_CHUNK, most));
        used = 0;
      }
      used += buf.write(line, used);
      timer ??= setTimeout(flush, BATCH_MS);
      return true;
    },
    flush,
  };
}

/** The bytes a batch takes at a time for its lines (it takes more as they come). */
const BATCH_CHUNK = 64 * 1024;

/** How long a log line may wait to be written with the lines after it, in milliseconds. */
export const BATCH_MS = 10;

/**
 * The CLI's logger: pino, one line an event, level names as words and ISO times, writing through
 * an asynchronous destination (sonic-boom): lines that arrive while a write is in flight are
 * gathered into the next one, so a slow disk or pipe never blocks the event loop that answers SMTP
 * clients, and what is still buffered is written out at exit. Addresses are rewritten
 * to the privacy level before a line is formatted.
 */
export function createLog(settings: LogSettings): CliLog {
  const redactor = new Redactor(settings.privacy);
  const sync = settings.sync ?? false;
  const dest = pino.destination({
    dest: settings.file ?? 2,
    sync,
    mkdir: settings.file !== undefined,
    maxLength: settings.maxBuffered ?? LOG_BUFFER_BYTES,
    // Batched (not sync), every line reaches it as the bytes of a batch (see batched).
    contentMode: sync ? 'utf8' : 'buffer',
  });
  // A log file that cannot be opened again (logrotate left its directory unwritable) or written is
  // said on stderr; the process goes on judging mail, writing to the file it had open, rather than
  // dying of an unhandled 'error' event.
  const fileFailed = (err: unknown) =>
    process.stderr.write(
      `mxguard: log file ${settings.file}: ${err instanceof Error ? err.message : String(err)}\n`,
    );
  if (settings.file !== undefined) dest.on('error', fileFailed);
  // Lines the destination could not hold: counted, and said once a second while it lasts, in the
  // log (written once the destination catches up) and on stderr when the log is a file.
  let dropped = 0;
  let reporting = false;
  dest.on('drop', (data: unknown) => {
    const text = String(data);
    let n = 0;
    for (let i = text.indexOf('\n'); i >= 0; i = text.indexOf('\n', i + 1)) n++;
    dropped += Math.max(1, n);
    if (reporting) return;
    reporting = true;
    setTimeout(() => {
      reporting = false;
      const lines = dropped;
      dropped = 0;
      const what = `log destination behind: ${lines} lines dropped`;
      if (settings.file !== undefined) process.stderr.write(`mxguard: log file ${settings.file}: ${what}\n`);
      logger.error({ dropped: lines, maxBuffered: settings.maxBuffered ?? LOG_BUFFER_BYTES }, what);
    }, LOG_BEHIND_MS).unref();
  });
  const text = settings.format === 'text';
  // Synchronous (tests, short commands): each line written as it comes, no batch.
  const batch = sync ? undefined : batched(dest as unknown as Bytes);
  const out: Lines = batch ?? dest;
  const logger = pino(
    {
      level: settings.level,
      base: { pid: process.pid },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: {
        level: (label) => ({ level: label }),
        log: (obj) => redactor.record(obj),
      },
      ...(text ? { hooks: { streamWrite: (s: string) => textLine(s, settings.name) } } : {}),
    },
    out,
  );
  const decisions = logger.isLevelEnabled('info');
  const pid = process.pid;
  // The time of a line, made once a millisecond (at thousands of lines a second, several share it).
  let ms = 0;
  let iso = '';
  const now = () => {
    const t = Date.now();
    if (t !== ms) {
      ms = t;
      iso = new Date(t).toISOString();
    }
    return iso;
  };
  const log: Logger = {
    debug: (obj, msg) => logger.debug(obj, msg),
    info: (obj, msg) => logger.info(obj, msg),
    warn: (obj, msg) => logger.warn(obj, msg),
    error: (obj, msg) => logger.error(obj, msg),
    // The line of every decision, the same bytes pino writes for info(record, 'decision') (level,
    // time, pid, the record's fields as the privacy level leaves them, msg), made by one
    // JSON.stringify: a third of what pino's general serialiser costs, once a request.
    decision: (record) => {
      if (!decisions) return;
      const fields = JSON.stringify(redactor.record(record as Record<string, unknown>)).slice(1, -1);
      const line = `{"level":"info","time":"${now()}","pid":${pid}${fields ? `,${fields}` : ''},"msg":"decision"}\n`;
      out.write(text ? textLine(line, settings.name) : line);
    },
  };
  return {
    log,
    redactor,
    reopen: () => {
      if (settings.file === undefined) return;
      try {
        dest.reopen();
      } catch (err) {
        fileFailed(err);
      }
    },
    flush: () => {
      try {
        batch?.flush();
        dest.flushSync();
      } catch {
        // Not open yet (nothing written): nothing to flush.
      }
    },
  };
}
