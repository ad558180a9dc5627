/**
 * A client for the API socket of p0f 3 (`p0f -s /path/to/socket`), the passive OS fingerprinter:
 * what p0f concluded about a host from the SYN it sent us (OS, distance in hops, link type).
 *
 * Protocol (p0f 3 README, section 4 "API access"; api.h): over a SOCK_STREAM UNIX socket, any
 * number of fixed-length queries, answered in order.
 *   query, 21 bytes:    u32 magic 0x50304601 (native endian), u8 address type (4 or 6),
 *                       16 bytes of address, network order, IPv4 left-aligned.
 *   response, 232 bytes: u32 magic 0x50304602, u32 status (0x00 bad query, 0x10 OK, 0x20 no
 *                       match), then (valid when OK) u32 first_seen, last_seen, total_conn,
 *                       uptime_min, up_mod_days, last_nat, last_chg; s16 distance; u8 bad_sw;
 *                       u8 os_match_q; char os_name[32], os_flavor[32], http_name[32],
 *                       http_flavor[32], link_type[32], language[32] (NUL-terminated).
 * "Native endian" is the host's: p0f runs on the same machine as its clients.
 *
 * Whatever goes wrong (no socket, p0f gone, a timeout, a short or garbled answer) the answer is
 * `unknown`: an OS guess is never worth a delayed or refused mail (DESIGN principle 2).
 */

import { createConnection } from 'node:net';
import { endianness } from 'node:os';
import type { Clock, Logger } from '@mxguard/core';
import { silentLogger, systemClock } from '@mxguard/core';
import { LRUCache } from 'lru-cache';
import { parseAddress } from './ip.js';

/** Query magic, `P0F_QUERY_MAGIC` in p0f's api.h. */
export const P0F_QUERY_MAGIC = 0x50304601;
/** Response magic, `P0F_RESP_MAGIC` in api.h. */
export const P0F_RESPONSE_MAGIC = 0x50304602;
/** Bytes of a query. */
export const P0F_QUERY_SIZE = 21;
/** Bytes of a response: 8 of header, 28 of counters, 4 of distance/flags, 6 strings of 32. */
export const P0F_RESPONSE_SIZE = 232;

const STATUS_BADQUERY = 0x00;
const STATUS_OK = 0x10;
const STATUS_NOMATCH = 0x20;

/** What p0f knows about a host (fields of `struct p0f_api_response`, camel-cased). */
export interface P0fHost {
  /** Unix time (seconds) p0f first saw the host. */
  readonly firstSeen: number;
  /** Unix time (seconds) p0f last saw the host. */
  readonly lastSeen: number;
  /** Connections p0f has seen from the host. */
  readonly totalConn: number;
  /** Uptime in minutes; 0 when unknown. */
  readonly uptimeMin: number;
  /** Days after which the uptime counter wraps (p0f's `up_mod_days`); 0 when unknown. */
  readonly upModDays: number;
  /** Unix time of the last sign of address sharing (NAT, load balancer, proxy); 0 if never. */
  readonly lastNat: number;
  /** Unix time of the last OS mismatch (multiboot, address reuse); 0 if never. */
  readonly lastChg: number;
  /** Hops from us, derived from the TTL; -1 when unknown. */
  readonly distance: number;
  /** 1: User-Agent/Server OS differs from the fingerprint, 2: outright mismatch. */
  readonly badSw: number;
  /** 0 normal match, 1 fuzzy (TTL or DF differ), 2 generic signature, 3 both. */
  readonly osMatchQ: number;
  /** e.g. `Linux`, `Windows`, `Mac OS X`; `''` when p0f did not recognise the OS. */
  readonly osName: string;
  /** e.g. `3.11 and newer`, `7 or 8`. */
  readonly osFlavor: string;
  /** The HTTP software p0f recognised, if it saw HTTP from the host (rare on port 25). */
  readonly httpName: string;
  /** Its version, as `osFlavor` for the OS. */
  readonly httpFlavor: string;
  /** e.g. `Ethernet or modem`, `DSL`, `generic tunnel or VPN`. */
  readonly linkType: string;
  /** The language p0f read from HTTP headers, if any. */
  readonly language: string;
}

/** p0f's answer, or `unknown` with why. Never thrown, never worse than `unknown`. */
export type P0fAnswer =
  | {
      /** p0f has seen the host. */
      readonly status: 'ok';
      /** What p0f knows of it. */
      readonly host: P0fHost;
    }
  | {
      /** p0f has not seen the host (yet). */
      readonly status: 'no-match';
    }
  | {
      /** Nothing is known: p0f is down, stuck, busy, or the address is bad. */
      readonly status: 'unknown';
      /** Why, for the log. */
      readonly reason: string;
    };

/** Anything that asks p0f: a `P0fClient`, or a fake in tests. */
export interface P0fLookup {
  /** What p0f knows of an address; never rejects. */
  query(address: string): Promise<P0fAnswer>;
}

const LE = endianness() === 'LE';

/** The 21-byte query for an address; `undefined` when it is not an IP address. */
export function encodeP0fQuery(address: string, littleEndian = LE): Buffer | undefined {
  const a = parseAddress(address);
  if (!a) return undefined;
  const q = Buffer.alloc(P0F_QUERY_SIZE);
  if (littleEndian) q.writeUInt32LE(P0F_QUERY_MAGIC, 0);
  else q.writeUInt32BE(P0F_QUERY_MAGIC, 0);
  q[4] = a.family;
  Buffer.from(a.bytes).copy(q, 5); // IPv4: left-aligned, the remaining 12 bytes stay zero
  return q;
}

/** A NUL-terminated p0f string: up to the first NUL, printable ASCII only. */
function cString(buf: Buffer, offset: number): string {
  const field = buf.subarray(offset, offset + 32);
  const end = field.indexOf(0);
  return field
    .subarray(0, end < 0 ? 32 : end)
    .toString('latin1')
    .replace(/[^\x20-\x7e]/g, '')
    .trim();
}

/** Decodes a response. Never throws: a short or garbled buffer is `unknown` with the reason. */
export function decodeP0fResponse(buf: Buffer, littleEndian = LE): P0fAnswer {
  if (buf.length < 8) return { status: 'unknown', reason: `short answer (${buf.length} bytes)` };
  const u32 = (o: number) => (littleEndian ? buf.readUInt32LE(o) : buf.readUInt32BE(o));
  const magic = u32(0);
  if (magic !== P0F_RESPONSE_MAGIC) return { status: 'unknown', reason: `bad magic 0x${magic.toString(16)}` };
  const status = u32(4);
  if (status === STATUS_NOMATCH) return { status: 'no-match' };
  if (status === STATUS_BADQUERY) return { status: 'unknown', reason: 'p0f says bad query' };
  if (status !== STATUS_OK) return { status: 'unknown', reason: `unknown status 0x${status.toString(16)}` };
  if (buf.length < P0F_RESPONSE_SIZE)
    return { status: 'unknown', reason: `short answer (${buf.length} bytes)` };
  const host: P0fHost = {
    firstSeen: u32(8),
    lastSeen: u32(12),
    totalConn: u32(16),
    uptimeMin: u32(20),
    upModDays: u32(24),
    lastNat: u32(28),
    lastChg: u32(32),
    distance: littleEndian ? buf.readInt16LE(36) : buf.readInt16BE(36),
    badSw: buf[38] ?? 0,
    osMatchQ: buf[39] ?? 0,
    osName: cString(buf, 40),
    osFlavor: cString(buf, 72),
    httpName: cString(buf, 104),
    httpFlavor: cString(buf, 136),
    linkType: cString(buf, 168),
    language: cString(buf, 200),
  };
  return { status: 'ok', host };
}

/** Options of `P0fClient`. */
export interface P0fClientOptions {
  /** Path of p0f's API socket (its `-s` argument). */
  readonly socketPath: string;
  /**
   * Longest wait for an answer, in ms, connection included. p0f answers from memory in well under
   * a millisecond; a slow answer means p0f is stuck, and then `unknown` is the right answer.
   * @default 500
   */
  readonly timeoutMs?: number;
  /** Queries in flight at once. p0f accepts 20 API connections by default (`-S`). @default 8 */
  readonly maxConcurrent?: number;
  /** Queries waiting for a slot; past this a query is answered `unknown` (busy) at once. @default 256 */
  readonly maxQueued?: number;
  /**
   * How long an `ok` answer is reused, in ms of the injected clock (p0f's own README asks clients to
   * cache: it does not). `no-match` is never cached: p0f may simply not have processed the SYN yet.
   * 0 disables the cache.
   * @default 30000
   */
  readonly cacheMs?: number;
  /** Addresses whose answer is cached. @default 10000 */
  readonly cacheSize?: number;
  /** @default systemClock */
  readonly clock?: Clock;
  /** Where failures to reach p0f are logged. */
  readonly log?: Logger;
}

/** Talks to p0f over its UNIX socket, one connection a query, bounded in time and concurrency. */
export class P0fClient implements P0fLookup {
  /** p0f's API socket. */
  readonly socketPath: string;
  readonly #timeoutMs: number;
  readonly #maxConcurrent: number;
  readonly #maxQueued: number;
  readonly #cacheMs: number;
  readonly #cache: LRUCache<string, { at: number; answer: P0fAnswer }>;
  readonly #clock: Clock;
  readonly #log: Logger;
  #active = 0;
  readonly #waiting: (() => void)[] = [];

  constructor(options: P0fClientOptions) {
    if (typeof options.socketPath !== 'string' || options.socketPath.length === 0) {
      throw new TypeError('P0fClient: socketPath must be a non-empty string');
    }
    const positive = (v: number | undefined, d: number, what: string, zero = false) => {
      const x = v ?? d;
      if (!Number.isFinite(x) || x < (zero ? 0 : 1))
        throw new TypeError(`P0fClient: ${what} must be a positive number`);
      return x;
    };
    this.socketPath = options.socketPath;
    this.#timeoutMs = positive(options.timeoutMs, 500, 'timeoutMs');
    this.#maxConcurrent = positive(options.maxConcurrent, 8, 'maxConcurrent');
    this.#maxQueued = positive(options.maxQueued, 256, 'maxQueued', true);
    this.#cacheMs = positive(options.cacheMs, 30_000, 'cacheMs', true);
    this.#cache = new LRUCache({ max: positive(options.cacheSize, 10_000, 'cacheSize') });
    this.#clock = options.clock ?? systemClock;
    this.#log = options.log ?? silentLogger;
  }

  /** What p0f knows about `address`. Never rejects. */
  async query(address: string): Promise<P0fAnswer> {
    const q = encodeP0fQuery(address);
    if (!q) return { status: 'unknown', reason: 'not an IP address' };
    const key = q.subarray(4).toString('hex');
    if (this.#cacheMs > 0) {
      const hit = this.#cache.get(key);
      if (hit && this.#clock.now() - hit.at < this.#cacheMs) return hit.answer;
    }
    if (this.#active >= this.#maxConcurrent) {
      if (this.#waiting.length >= this.#maxQueued) return { status: 'unknown', reason: 'p0f client busy' };
      await new Promise<void>((resolve) => this.#waiting.push(resolve));
    }
    this.#active++;
    let answer: P0fAnswer;
    try {
      answer = await this.#ask(q);
    } finally {
      this.#active--;
      this.#waiting.shift()?.();
    }
    if (answer.status === 'ok' && this.#cacheMs > 0) this.#cache.set(key, { at: this.#clock.now(), answer });
    if (answer.status === 'unknown') {
      this.#log.debug({ socket: this.socketPath, address, reason: answer.reason }, 'p0f: no answer');
    }
    return answer;
  }

  #ask(q: Buffer): Promise<P0fAnswer> {
    return new Promise((resolve) => {
      const chunks: Buffer[] = [];
      let received = 0;
      let done = false;
      const socket = createConnection({ path: this.socketPath });
      const finish = (a: P0fAnswer) => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        socket.destroy();
        resolve(a);
      };
      // A real timer: this bounds I/O, it is not state-machine time (which uses the injected clock).
      const timer = setTimeout(
        () => finish({ status: 'unknown', reason: `timeout after ${this.#timeoutMs} ms` }),
        this.#timeoutMs,
      );
      socket.on('connect', () => socket.write(q));
      socket.on('data', (d: Buffer) => {
        chunks.push(d);
        received += d.length;
        if (received >= P0F_RESPONSE_SIZE)
          finish(decodeP0fResponse(Buffer.concat(chunks).subarray(0, P0F_RESPONSE_SIZE)));
      });
      socket.on('error', (err: NodeJS.ErrnoException) =>
        finish({ status: 'unknown', reason: `p0f socket: ${err.code ?? err.message}` }),
      );
      // p0f closed early: a no-match or bad-query header may still be readable.
      socket.on('close', () =>
        finish(
          received > 0
            ? decodeP0fResponse(Buffer.concat(chunks))
            : { status: 'unknown', reason: 'p0f closed the connection' },
        ),
      );
    });
  }
}
