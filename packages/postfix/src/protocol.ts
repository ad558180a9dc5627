/**
 * The wire format of Postfix's policy delegation protocol (SMTPD_POLICY_README, "Protocol
 * description"): a request is a list of `name=value` lines ending with an empty line; the answer
 * is `action=...` followed by an empty line. Postfix ends lines with a bare LF; a CR before the LF
 * is tolerated here, as other policy servers do.
 *
 * This module is pure: it turns bytes into requests and decisions into bytes.
 */

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

/** Attribute names are short lower-case words with `_` in practice; anything else is garbage. */
const NAME = /^[A-Za-z0-9_.-]{1,64}$/;
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
  private pending: Buffer = EMPTY;
  private current = new Map<string, string>();
  private lines = 0;
  private readonly ready: PolicyRequest[] = [];

  constructor(limits: ParserLimits = {}) {
    this.maxLine = limits.maxLineLength ?? 4096;
    this.maxAttrs = limits.maxAttributes ?? 100;
    this.maxQueued = limits.maxQueued ?? 100;
  }

  /**
   * Adds bytes. Complete requests become available through `take()`. Throws ProtocolError on the
   * first malformed line; the parser must then be discarded with its connection.
   */
  feed(chunk: Buffer): void {
    let buf = this.pending.length > 0 ? Buffer.concat([this.pending, chunk]) : chunk;
    let start = 0;
    for (;;) {
      const nl = buf.indexOf(0x0a, start);
      if (nl < 0) break;
      let end = nl;
      if (end > start && buf[end - 1] === 0x0d) end--;
      if (end - start > this.maxLine) {
        throw new ProtocolError(`line longer than ${this.maxLine} bytes`, 'line-too-long');
      }
      // Each line decoded on its own: a value kept for long (a recipient in a transaction's list)
      // then holds on to its own line only, never to the whole chunk a slice of one string would.
      this.line(buf.toString('utf8', start, end));
      start = nl + 1;
    }
    buf = buf.subarray(start);
    if (buf.length > this.maxLine + 1) {
      throw new ProtocolError(`line longer than ${this.maxLine} bytes`, 'line-too-long');
    }
    // Copy so the parser does not pin the (possibly large) chunk it came from.
    this.pending = buf.length > 0 ? Buffer.from(buf) : EMPTY;
  }

  /** The next complete request, or undefined. */
  take(): PolicyRequest | undefined {
    return this.ready.shift();
  }

  /** True when bytes of an unfinished request are buffered. */
  get midRequest(): boolean {
    return this.pending.length > 0 || this.lines > 0;
  }

  private line(text: string): void {
    if (text === '') {
      // An empty line ends the request. Several empty lines in a row are not requests.
      if (this.lines > 0) {
        if (this.ready.length >= this.maxQueued) {
          throw new ProtocolError(`more than ${this.maxQueued} requests sent ahead`, 'too-many-requests');
        }
        this.ready.push(this.current);
        this.current = new Map();
        this.lines = 0;
      }
      return;
    }
    const eq = text.indexOf('=');
    if (eq < 0) throw new ProtocolError('line without "="', 'no-equals');
    const name = text.slice(0, eq);
    if (!NAME.test(name)) throw new ProtocolError('attribute name is not a word', 'bad-name');
    this.lines++;
    if (this.lines > this.maxAttrs) {
      throw new ProtocolError(`more than ${this.maxAttrs} attributes in one request`, 'too-many-attributes');
    }
    this.current.set(name.toLowerCase(), text.slice(eq + 1));
  }
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
