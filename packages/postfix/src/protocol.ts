/**
 * The wire format of Postfix's policy delegation protocol (SMTPD_POLICY_README, "Protocol
 * description"): a request is a list of `name=value` lines ending with an empty line; the answer
 * is `action=...` followed by an empty line. Postfix ends lines with a bare LF; a CR before the LF
 * is tolerated here, as other policy servers do.
 *
 * This module is pure: it turns bytes into requests and decisions into bytes.
 */

import { isAscii } from 'node:buffer';
import type { Reply } from '@mxguard/core';

/** One request: attribute names and values in the order received (a repeated name keeps its last value). */
export type PolicyRequest = ReadonlyMap<string, string>;

/** Limits of the parser. */
export interface ParserLimits {
  /**
   * Longest line accepted, in bytes, without its LF. Postfix's own limit on attribute values is
   * `line_length_limit` (2048) for most of them; addresses are bounded by RFC 5321 to 256 octets.
   * @default 4096
   */
  readonly maxLineLength?: number;
  /**
   * Most attributes in one request. Postfix 3.7 sends about 30.
   * @default 100
   */
  readonly maxAttributes?: number;
  /**
   * Most complete requests held before they are taken. Postfix sends one request and waits for
   * its answer (SMTPD_POLICY_README), so a client that gets this far ahead is not Postfix; past
   * this `feed` throws, and the connection is closed. Without it, one 64 KiB read of minimal
   * requests (`a=1` and an empty line) would be held as some 13,000 parsed requests.
   * @default 100
   */
  readonly maxQueued?: number;
  /**
   * The attributes kept in each request (lower-case names); the others are checked as every line
   * is (a name, within the line length, counted against `maxAttributes`) and not stored. The policy
   * server keeps those it reads ({@link READ_ATTRIBUTES}): Postfix sends some 30.
   * @default every attribute
   */
  readonly keep?: ReadonlySet<string>;
}

/** Why a request was refused: the connection is then closed, as the protocol asks. */
export class ProtocolError extends Error {
  constructor(
    message: string,
    /** Short stable code for logs and tests. */
    readonly code: 'line-too-long' | 'no-equals' | 'bad-name' | 'too-many-attributes' | 'too-many-requests',
  ) {
    super(message);
    this.name = 'ProtocolError';
  }
}

/**
 * Attribute names are short lower-case words with `_` in practice; anything else is garbage. The
 * name `text[start..end)` is checked as `/^[A-Za-z0-9_.-]{1,64}$/` would: -1 when it is not a name,
 * 1 when it has an upper-case letter (to be lowered), 0 when it is as Postfix writes names.
 */
function nameCase(text: string, start: number, end: number): number {
  if (end <= start || end - start > 64) return -1;
  let upper = 0;
  for (let i = start; i < end; i++) {
    const c = text.charCodeAt(i);
    if ((c >= 0x61 && c <= 0x7a) || (c >= 0x30 && c <= 0x39) || c === 0x5f || c === 0x2e || c === 0x2d)
      continue;
    if (c >= 0x41 && c <= 0x5a) upper = 1;
    else return -1;
  }
  return upper;
}
const EMPTY = Buffer.alloc(0);

/**
 * An incremental parser: feed it bytes as they arrive, take whole requests out. Its memory is
 * bounded by `maxLineLength` plus one chunk, `maxAttributes` lines of that length, and
 * `maxQueued` requests not yet taken.
 */
export class RequestParser {
  private readonly maxLine: number;
  private readonly maxAttrs: number;
  private readonly maxQueued: number;
  private readonly keep: ReadonlySet<string> | undefined;
  private pending: Buffer = EMPTY;
  private current = new Map<string, string>();
  private lines = 0;
  private readonly queue: PolicyRequest[] = [];

  constructor(limits: ParserLimits = {}) {
    this.maxLine = limits.maxLineLength ?? 4096;
    this.maxAttrs = limits.maxAttributes ?? 100;
    this.maxQueued = limits.maxQueued ?? 100;
    this.keep = limits.keep;
  }

  /**
   * Adds bytes. Complete requests become available through `take()`. Throws ProtocolError on the
   * first malformed line; the parser must then be discarded with its connection.
   */
  feed(chunk: Buffer): void {
    let buf = this.pending.length > 0 ? Buffer.concat([this.pending, chunk]) : chunk;
    const last = buf.lastIndexOf(0x0a);
    let start = 0;
    if (last >= 0 && isAscii(buf.subarray(0, last))) {
      // What Postfix sends without SMTPUTF8: the whole lines decoded at once (one call into the
      // runtime, not one a line), each line read from that text.
      start = this.text(buf.toString('latin1', 0, last + 1));
    } else {
      for (;;) {
        const nl = buf.indexOf(0x0a, start);
        if (nl < 0) break;
        let end = nl;
        if (end > start && buf[end - 1] === 0x0d) end--;
        this.lengthOk(end - start);
        const line = buf.toString('utf8', start, end);
        this.line(line, 0, line.length);
        start = nl + 1;
      }
    }
    buf = buf.subarray(start);
    if (buf.length > this.maxLine + 1) {
      throw new ProtocolError(`line longer than ${this.maxLine} bytes`, 'line-too-long');
    }
    // Copy so the parser does not pin the (possibly large) chunk it came from.
    this.pending = buf.length > 0 ? Buffer.from(buf) : EMPTY;
  }

  /** Reads every line of `text` (ASCII, ending with LF); returns its length. */
  private text(text: string): number {
    let start = 0;
    for (let nl = text.indexOf('\n'); nl >= 0; nl = text.indexOf('\n', start)) {
      let end = nl;
      if (end > start && text.charCodeAt(end - 1) === 0x0d) end--;
      this.lengthOk(end - start);
      this.line(text, start, end);
      start = nl + 1;
    }
    return start;
  }

  private lengthOk(length: number): void {
    if (length > this.maxLine) {
      throw new ProtocolError(`line longer than ${this.maxLine} bytes`, 'line-too-long');
    }
  }

  /** The next complete request, or undefined. */
  take(): PolicyRequest | undefined {
    return this.queue.shift();
  }

  /** True when a complete request waits to be taken. */
  get hasRequest(): boolean {
    return this.queue.length > 0;
  }

  /** True when bytes of an unfinished request are buffered. */
  get midRequest(): boolean {
    return this.pending.length > 0 || this.lines > 0;
  }

  /** One line: `text` from `start` to `end` (without its LF). */
  private line(text: string, start: number, end: number): void {
    if (start === end) {
      // An empty line ends the request. Several empty lines in a row are not requests.
      if (this.lines > 0) {
        if (this.queue.length >= this.maxQueued) {
          throw new ProtocolError(`more than ${this.maxQueued} requests sent ahead`, 'too-many-requests');
        }
        this.queue.push(this.current);
        this.current = new Map();
        this.lines = 0;
      }
      return;
    }
    const eq = text.indexOf('=', start);
    if (eq < 0 || eq >= end) throw new ProtocolError('line without "="', 'no-equals');
    const upper = nameCase(text, start, eq);
    if (upper < 0) throw new ProtocolError('attribute name is not a word', 'bad-name');
    const name = text.slice(start, eq);
    this.lines++;
    if (this.lines > this.maxAttrs) {
      throw new ProtocolError(`more than ${this.maxAttrs} attributes in one request`, 'too-many-attributes');
    }
    const key = upper ? name.toLowerCase() : name;
    if (this.keep && !this.keep.has(key)) return;
    this.current.set(key, own(text.slice(eq + 1, end)));
  }
}

/**
 * `s` as a string of its own. A slice of 13 characters or more is a view into the string it was cut
 * from (V8's sliced strings): a value kept for long (a recipient in a transaction's list, a key in
 * a store) would keep the whole text of the chunk it came in alive. A concatenation that is cut
 * again is copied when it is cut: the result holds its own characters only.
 */
function own(s: string): string {
  return s.length < 13 ? s : ` ${s}`.slice(1);
}

/** Serialises one request as Postfix sends it (for clients, tests and benchmarks). */
export function formatRequest(attrs: Readonly<Record<string, string | number>>): string {
  let out = '';
  for (const [k, v] of Object.entries(attrs)) {
    out += `${k}=${String(v).replace(/[\r\n]/g, ' ')}\n`;
  }
  return `${out}\n`;
}

/** Control characters (and DEL) never go on the wire: Postfix would pass them to the SMTP client. */
function clean(text: string): string {
  return text.replace(/[\u0000-\u001f\u007f]+/g, ' ').trim();
}

/**
 * The action that makes Postfix answer with this exact reply: `5NN 5.X.Y text` / `4NN 4.X.Y text`.
 * access(5), "REJECT ACTIONS": Postfix replies with the numerical code and text given, and uses an
 * enhanced status code found at the start of the text (it only inserts 5.7.1/4.7.1 when there is
 * none). Postfix may still adjust an address-status DSN (x.1.x) to the restriction class (access(5),
 * "ENHANCED STATUS CODES") and turns 5xx into 4xx under `soft_bounce = yes`.
 */
export function replyAction(r: Reply): string {
  return `${r.code} ${r.enhanced} ${clean(r.text)}`.trimEnd();
}

/**
 * DEFER_IF_PERMIT with our enhanced code: Postfix replies `$access_map_defer_code` (450) with it,
 * unless a later restriction rejects (access(5)). The basic code is Postfix's, not ours.
 */
export function deferIfPermitAction(r: Reply): string {
  return `DEFER_IF_PERMIT ${r.enhanced} ${clean(r.text)}`.trimEnd();
}

/** The bytes of one answer. */
export function formatAnswer(action: string): string {
  return `action=${clean(action)}\n\n`;
}
