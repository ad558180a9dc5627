/**
 * The relays of a message's Received headers (RFC 5321 section 4.4, RFC 5322 section 3.6.7), for
 * the DATA stage: who handed the message to whom, from which address, with what.
 *
 * This is evidence about the path, written by strangers: every header below our own is a claim a
 * sender could have forged. So the helpers here only ever produce findings (points for `weigh()`),
 * never a verdict, and there is no option to reject because a Received-header address is listed.
 * The connecting IP is judged by the connect-stage checks; an address deeper in the headers is
 * often the dynamic address of an honest ISP's customer who submitted through their provider's
 * server, exactly as they should (DESIGN principle 3). See docs/checks/received.md.
 *
 * The grammar of RFC 5321's `Stamp` is a minimum that real MTAs decorate freely; the parser reads
 * the forms Postfix, Exim, Sendmail, qmail, Microsoft Exchange/Office 365 and Gmail write, and on
 * anything else returns what it could read. It never throws, and bounds everything it reads.
 */
import type { Finding, Logger } from '@mxguard/core';
import { silentLogger } from '@mxguard/core';
import { addressMatcher, isPublic, parseAddress } from './ip.js';

/** One hop, from one Received header. Fields are absent when the header does not say. */
export interface ReceivedRelay {
  /** Position among the Received headers: 0 is the topmost (the most recent hop, usually ours). */
  readonly index: number;
  /** The name after `from` (what the sending host called itself, usually its HELO), without a trailing dot. */
  readonly from?: string;
  /** The HELO name when the header gives it apart from `from` (Exim `helo=`, qmail `HELO`). */
  readonly helo?: string;
  /** The reverse-DNS name the receiving host found for the sender (`unknown` is left out). */
  readonly rdns?: string;
  /** The sender's IP address as the receiving host saw it, canonical (IPv4-mapped unwrapped). */
  readonly ip?: string;
  /** The receiving host (`by`). */
  readonly by?: string;
  /** The protocol (`with`: SMTP, ESMTPS, ESMTPSA, LMTP, HTTPS...), upper case. */
  readonly with?: string;
  /** The receiving host's queue id (`id`). */
  readonly id?: string;
  /** The recipient (`for`), without angle brackets. */
  readonly for?: string;
  /** The date after the last `;`, as written (not parsed). */
  readonly date?: string;
  /** The unfolded header value, bounded to 998 characters (RFC 5322's line limit), for logs. */
  readonly text: string;
}

/** Limits that keep hostile input cheap. */
export const RECEIVED_LIMITS = {
  /** Received headers read; a message with more is a loop or an attack (Postfix's hopcount_limit is 50). */
  maxHeaders: 100,
  /** Characters of one header value that are parsed. */
  maxHeaderLength: 4096,
  /** Characters of input read in all. */
  maxInput: 512 * 1024,
  /** Characters of a name, id or address kept. */
  maxField: 255,
} as const;

type Token = { kind: 'word'; text: string } | { kind: 'comment'; text: string };

const HEADER_NAME = /^([!-9;-~]+)[ \t]*:/;

/** Unfolds header text and returns the values of its Received fields (or the bare values given). */
function receivedValues(input: string | readonly string[]): string[] {
  const list = typeof input === 'string' ? [input] : Array.isArray(input) ? input : [];
  const out: string[] = [];
  let budget = RECEIVED_LIMITS.maxInput;
  for (const item of list) {
    if (typeof item !== 'string' || budget <= 0) continue;
    const text = item.slice(0, budget);
    budget -= text.length;
    // Split into fields: a line starting with white space continues the previous field (RFC 5322 2.2.3).
    const fields: string[] = [];
    for (const line of text.split(/\r?\n/)) {
      if (/^[ \t]/.test(line) && fields.length > 0) fields[fields.length - 1] += ` ${line.trim()}`;
      else if (line.trim().length > 0) fields.push(line.trim());
      if (fields.length > RECEIVED_LIMITS.maxHeaders * 4) break;
    }
    for (const f of fields) {
      const m = HEADER_NAME.exec(f);
      if (m) {
        if (m[1]?.toLowerCase() === 'received') out.push(f.slice(m[0].length));
        // any other header is not ours to read
      } else out.push(f); // a bare value, as an adapter's header list gives them
      if (out.length >= RECEIVED_LIMITS.maxHeaders) return out;
    }
  }
  return out;
}

/** Position of the last `;` outside comments (RFC 5321: the date follows it), or -1. */
function lastSemicolon(s: string): number {
  let depth = 0;
  let last = -1;
  for (let j = 0; j < s.length; j++) {
    const c = s[j];
    if (c === '\\') j++;
    else if (c === '(') depth = Math.min(depth + 1, 1_000_000);
    else if (c === ')') depth = Math.max(depth - 1, 0);
    else if (c === ';' && depth === 0) last = j;
  }
  return last;
}

/** Words and (balanced, possibly nested) comments before the date; the date after the last `;`. */
function tokenize(s: string): { tokens: Token[]; date?: string } {
  const semi = lastSemicolon(s);
  const body = semi >= 0 ? s.slice(0, semi) : s;
  const tokens: Token[] = [];
  let i = 0;
  while (i < body.length) {
    const c = body[i] as string;
    if (c === ';' || /\s/.test(c)) {
      i++;
    } else if (c === '(') {
      let depth = 0;
      let j = i;
      for (; j < body.length; j++) {
        if (body[j] === '\\') j++;
        else if (body[j] === '(') depth++;
        else if (body[j] === ')' && --depth === 0) break;
      }
      // An unbalanced comment runs to the end of the header, as a lenient reader must assume.
      tokens.push({ kind: 'comment', text: body.slice(i + 1, Math.min(j, body.length)) });
      i = j + 1;
    } else {
      let j = i;
      while (j < body.length && !/[\s();]/.test(body[j] as string)) j++;
      tokens.push({ kind: 'word', text: body.slice(i, j) });
      i = Math.max(j, i + 1); // always advance, whatever the character
    }
  }
  if (semi < 0) return { tokens };
  const date = s
    .slice(semi + 1)
    .replace(/\s+/g, ' ')
    .trim()
    .slice(0, 64);
  return date ? { tokens, date } : { tokens };
}

const KEYWORDS = new Set(['from', 'by', 'via', 'with', 'id', 'for']);

const clip = (s: string) => s.slice(0, RECEIVED_LIMITS.maxField);

/** A host name as written, without a trailing dot, or undefined when it is not name-like. */
function hostName(w: string | undefined): string | undefined {
  if (!w) return undefined;
  const s = clip(w.replace(/\.$/, ''));
  return /^[A-Za-z0-9_][A-Za-z0-9._-]*$/.test(s) ? s : undefined;
}

/** The IP of `[1.2.3.4]`, `[IPv6:2001:db8::1]`, `[1.2.3.4]:port`, or a bare address. */
function ipOf(w: string): string | undefined {
  let s = w.trim();
  const br = /^\[([^\]]{1,80})\](?::\d{1,5})?$/.exec(s);
  if (br) s = br[1] as string;
  else if (s.length > 80) return undefined;
  return parseAddress(s)?.text;
}

interface FromInfo {
  ip?: string;
  rdns?: string;
  helo?: string;
}

/** Reads the comment of a `from` clause: `rdns [ip]`, `[ip] helo=x`, `HELO x`, `(ip)`, `IDENT:u@h [ip]`. */
function readFromComment(text: string, into: FromInfo): void {
  const t = text.slice(0, RECEIVED_LIMITS.maxHeaderLength);
  const helo = /\bhelo[= ]\s*(\[[^\]\s()]{1,250}\]|[^\s()[\]]{1,255})/i.exec(t);
  if (helo && !into.helo) into.helo = clip((helo[1] as string).replace(/\.$/, ''));
  if (into.ip) return;
  const words = t.split(/[\s()]+/).filter((w) => w.length > 0);
  for (let k = 0; k < words.length && k < 64; k++) {
    const w = words[k] as string;
    if (w.startsWith('[')) {
      const ip = ipOf(w);
      if (ip) {
        into.ip = ip;
        // The word before is the name the receiver found (Postfix/Sendmail: "name [ip]").
        const before = words[k - 1]?.replace(/^IDENT:[^@]*@/i, '').replace(/^[^@]*@/, '');
        const name = hostName(before);
        if (name && name.toLowerCase() !== 'unknown' && !name.includes('=')) into.rdns = name;
        return;
      }
    }
  }
  // Exchange and qmail put the bare address in the comment: "(10.0.0.5)", "(2603:10b6:5:1d8::12)".
  for (const w of words.slice(0, 64)) {
    const ip = ipOf(w);
    if (ip) {
      into.ip = ip;
      return;
    }
  }
}

function parseOne(value: string, index: number): ReceivedRelay {
  const text = value.replace(/\s+/g, ' ').trim().slice(0, 998);
  const { tokens, date } = tokenize(
    value.slice(0, RECEIVED_LIMITS.maxHeaderLength).replace(/[\0-\x1f\x7f]/g, ' '),
  );
  const out: {
    -readonly [K in keyof ReceivedRelay]?: ReceivedRelay[K];
  } = { index, text };
  const from: FromInfo = {};
  let fromWord: string | undefined;
  let clause: string | undefined;
  let expectValue = false;
  for (const tok of tokens) {
    if (tok.kind === 'comment') {
      if (clause === 'from') readFromComment(tok.text, from);
      expectValue = false;
      continue;
    }
    const lower = tok.text.toLowerCase();
    if (KEYWORDS.has(lower) && !expectValue) {
      clause = lower;
      expectValue = true;
      continue;
    }
    if (!expectValue) continue; // decoration (Exim's "tls CIPHER"), ignored
    expectValue = false;
    const w = clip(tok.text);
    switch (clause) {
      case 'from':
        fromWord = w;
        break;
      case 'by': {
        const by = hostName(w) ?? ipOf(w);
        if (by && out.by === undefined) out.by = by;
        break;
      }
      case 'with':
        if (out.with === undefined && /^[A-Za-z0-9_-]{1,32}$/.test(w)) out.with = w.toUpperCase();
        break;
      case 'id':
        if (out.id === undefined) out.id = w.replace(/[^\x21-\x7e]/g, '').slice(0, 128);
        break;
      case 'for':
        if (out.for === undefined) out.for = w.replace(/^<|>$/g, '');
        break;
      default:
        break;
    }
  }
  if (fromWord !== undefined) {
    const literal = ipOf(fromWord);
    const name = hostName(fromWord);
    if (name && !literal) out.from = name;
    else if (literal) out.from = fromWord.replace(/\]:\d+$/, ']');
    // Exim without rDNS: "from [ip] (helo=x)": the literal is the address it saw. Postfix with a
    // literal HELO: "from [a] (unknown [b])": the comment wins, read above.
    if (!from.ip && literal) from.ip = literal;
  }
  if (from.ip) out.ip = from.ip;
  if (from.rdns) out.rdns = from.rdns;
  if (from.helo) out.helo = from.helo;
  if (date) out.date = date;
  return out as ReceivedRelay;
}

/**
 * The relays named by Received headers, topmost (most recent) first. `headers` is the header
 * block of a message, one header, or a list of header values or lines (any other headers in the
 * input are ignored). Never throws: unreadable parts come back as absent fields.
 */
export function receivedRelays(headers: string | readonly string[]): ReceivedRelay[] {
  try {
    return receivedValues(headers).map((v, i) => {
      try {
        return parseOne(v, i);
      } catch {
        return { index: i, text: String(v).slice(0, 998) };
      }
    });
  } catch {
    return [];
  }
}

/**
 * What scoring the relays produces: a finding with points, and nothing else. The type has no
 * verdict and no `doubt`, so nothing built from it can reject or hold a message on its own.
 */
export interface ReceivedFinding extends Finding {
  readonly score: number;
  readonly doubt?: undefined;
}

/** Options of `scoreReceived`. */
export interface ScoreReceivedOptions {
  /**
   * Whether an address is listed, by the caller's own means (a DNS list lookup, a local table).
   * Returns a short tag (e.g. the list's zone) when listed, `undefined` when not. Should bound its
   * own time (a resolver with timeouts); a throw or a rejection counts as "not listed".
   */
  readonly listed: (ip: string) => string | undefined | Promise<string | undefined>;
  /** Name on the findings. @default 'received' */
  readonly name?: string;
  /** Points per listed relay. @default 0.5 */
  readonly score?: number;
  /**
   * Cap on the total: relays in headers are claims by strangers, so all of them together weigh
   * little. Keep it below every threshold of `weigh()`.
   * @default 1
   */
  readonly maxScore?: number;
  /**
   * The topmost headers written by our own MTAs (and so trustworthy), skipped: the first external
   * hop is already judged as the connecting client.
   * @default 1
   */
  readonly skipTop?: number;
  /** Relays looked at after `skipTop`. @default 5 */
  readonly maxRelays?: number;
  /** Addresses and CIDRs never scored (our own relays, our forwarders). @default [] */
  readonly trusted?: readonly string[];
  /** The connecting client's address: skipped, the connect-stage checks judged it. */
  readonly clientAddress?: string;
  /** Where lookup failures are logged. */
  readonly log?: Logger;
}

/**
 * Scores the public addresses of the relays below ours: each listed one adds `score` points, up to
 * `maxScore`. Returns findings to pass to `chain.evaluate(session, findings)` at DATA, or to add
 * to a `weigh()`; never a verdict. Private, loopback, trusted and client addresses are skipped.
 */
export async function scoreReceived(
  headers: string | readonly string[] | readonly ReceivedRelay[],
  options: ScoreReceivedOptions,
): Promise<ReceivedFinding[]> {
  if (typeof options.listed !== 'function') throw new TypeError('scoreReceived: listed must be a function');
  const name = options.name ?? 'received';
  const per = options.score ?? 0.5;
  const cap = options.maxScore ?? 1;
  const skipTop = options.skipTop ?? 1;
  const maxRelays = options.maxRelays ?? 5;
  for (const [k, v] of Object.entries({ score: per, maxScore: cap, skipTop, maxRelays })) {
    if (!Number.isFinite(v) || v < 0)
      throw new TypeError(`scoreReceived: ${k} must be a non-negative number`);
  }
  const log = options.log ?? silentLogger;
  const trusted = addressMatcher(options.trusted ?? []);
  const client = options.clientAddress ? parseAddress(options.clientAddress)?.text : undefined;
  const relays: readonly ReceivedRelay[] =
    Array.isArray(headers) && headers.length > 0 && typeof headers[0] === 'object'
      ? (headers as readonly ReceivedRelay[])
      : receivedRelays(headers as string | readonly string[]);

  const ips: string[] = [];
  for (const r of relays.slice(skipTop)) {
    if (ips.length >= maxRelays) break;
    const p = r.ip ? parseAddress(r.ip) : undefined;
    if (!p || !isPublic(p) || trusted(p) || p.text === client || ips.includes(p.text)) continue;
    ips.push(p.text);
  }
  const answers = await Promise.all(
    ips.map(async (ip) => {
      try {
        return await options.listed(ip);
      } catch (err) {
        log.debug({ ip, err: String(err) }, 'received: listing lookup failed; not counted');
        return undefined;
      }
    }),
  );
  const out: ReceivedFinding[] = [];
  let total = 0;
  answers.forEach((tag, k) => {
    if (typeof tag !== 'string' || tag.length === 0 || total >= cap) return;
    const s = Math.min(per, cap - total);
    total += s;
    out.push({ check: name, tag: `relay-listed:${tag.slice(0, 64)}:${ips[k]}`, score: s });
  });
  return out;
}
