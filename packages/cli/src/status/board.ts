import type { Clock, Decision, Session } from '@mxguard/core';
import { decisionRecord } from '@mxguard/core';
import { Redactor } from '../privacy.js';

/** One step of a decision's trace as the status page shows it. */
export interface ShownStep {
  /** The check's name. */
  readonly check: string;
  /** What it said (`next`, `reject`, `defer`, `skip`, ...). */
  readonly action: string;
  /** Its reply code, for a decision. */
  readonly code?: number;
  /** Why, clipped. */
  readonly reason?: string;
  /** The check ran in warn mode. */
  readonly warn?: boolean;
  /** Milliseconds it took. */
  readonly ms?: number;
}

/**
 * One decision as the status page keeps it: the fields of the decision log line, its addresses
 * already rewritten to the privacy level, every string clipped (see `LIMITS`).
 */
export interface ShownDecision {
  /** When it was recorded, ms since the epoch (the board's clock). */
  readonly time: number;
  /** The adapter's session id, to find it in the log. */
  readonly session?: string;
  /** The stage judged. */
  readonly stage: string;
  /** The client's address, at the privacy level. */
  readonly client: string;
  /** The HELO name. */
  readonly helo?: string;
  /** The envelope sender, at the privacy level. */
  readonly from?: string;
  /** The recipient, at the privacy level. */
  readonly to?: string;
  /** What was answered. */
  readonly action: string;
  /** In a dry run (`mode: "warn"`): what would have been answered. */
  readonly would?: string;
  /** The reply's code. */
  readonly code?: number;
  /** The reply's enhanced status code. */
  readonly enhanced?: string;
  /** The reply's text, clipped. */
  readonly text?: string;
  /** The check that decided (or would have). */
  readonly check?: string;
  /** Why, clipped. */
  readonly reason?: string;
  /** The trace, link by link. */
  readonly trace: readonly ShownStep[];
  /** Steps of the trace left out to keep the entry small. */
  readonly traceDropped: number;
}

/**
 * The sizes that bound one entry. A mail address is at most 254 octets and a host name 253 (RFC
 * 5321), so 256 clips only what no honest client sends; a reply line is at most 512 octets.
 */
export const LIMITS = {
  /** client, helo, from, to, session, stage, check, enhanced. */
  field: 256,
  /** reply text and reason. */
  text: 512,
  /** a trace step's reason. */
  stepReason: 200,
  /** steps kept of a trace (the recommended preset has about 20 links). */
  steps: 40,
} as const;

/** Counts by action of one check over one minute or more. */
export interface ActionCounts {
  reject: number;
  defer: number;
  accept: number;
  next: number;
}

/** Options of {@link StatusBoard}. */
export interface StatusBoardOptions {
  /** The clock of the minute counters and of each entry's time. */
  readonly clock: Clock;
  /** How addresses are kept (`--log-privacy`): the same rewriting as the log lines. */
  readonly redactor?: Redactor;
  /** Entries kept at most. @default 500 */
  readonly maxEntries?: number;
  /** Bytes kept at most, each entry counted about as its JSON in UTF-8 (`sizeOf`). @default 2 MiB */
  readonly maxBytes?: number;
  /** Distinct check names counted a minute; the rest count as `other`. @default 64 */
  readonly maxChecks?: number;
}

/** The check name of a decision that no check made (every link said `next`). */
export const PASSED = '(passed)';
/** Where counts go past {@link StatusBoardOptions.maxChecks} names in a minute. */
export const OTHER = '(other)';
const MINUTE = 60_000;
/** Minutes kept by the counters: the last hour. */
export const MINUTES = 60;

function clip(v: unknown, n: number): string | undefined {
  if (typeof v !== 'string') return undefined;
  return v.length > n ? `${v.slice(0, n - 1)}…` : v;
}

function num(v: unknown): number | undefined {
  return typeof v === 'number' && Number.isFinite(v) ? v : undefined;
}

/** A decision log record (already redacted) as a bounded entry. */
function shown(rec: Record<string, unknown>, time: number): ShownDecision {
  const trace = Array.isArray(rec.trace) ? (rec.trace as Record<string, unknown>[]) : [];
  const steps: ShownStep[] = trace.slice(0, LIMITS.steps).map((s) => {
    const step: {
      check: string;
      action: string;
      code?: number;
      reason?: string;
      warn?: boolean;
      ms?: number;
    } = {
      check: clip(s.check, LIMITS.field) ?? '?',
      action: clip(s.action, LIMITS.field) ?? '?',
    };
    const code = num(s.code);
    if (code !== undefined) step.code = code;
    const reason = clip(s.reason, LIMITS.stepReason);
    if (reason !== undefined) step.reason = reason;
    if (s.warn === true) step.warn = true;
    const ms = num(s.ms);
    if (ms !== undefined) step.ms = ms;
    return step;
  });
  const out: Record<string, unknown> = {
    time,
    stage: clip(rec.stage, LIMITS.field) ?? '?',
    client: clip(rec.client, LIMITS.field) ?? '',
    action: clip(rec.action, LIMITS.field) ?? '?',
    trace: steps,
    traceDropped: trace.length - steps.length,
  };
  for (const f of ['session', 'helo', 'from', 'to', 'would', 'enhanced', 'check'] as const) {
    const v = clip(rec[f], LIMITS.field);
    if (v !== undefined) out[f] = v;
  }
  for (const f of ['text', 'reason'] as const) {
    const v = clip(rec[f], LIMITS.text);
    if (v !== undefined) out[f] = v;
  }
  const code = num(rec.code);
  if (code !== undefined) out.code = code;
  return out as unknown as ShownDecision;
}

/**
 * The bytes an entry is counted as: each string in UTF-8 plus 16 for its key and quotes, 16 a
 * number, 32 a step; within a few percent of its JSON, without building the JSON.
 */
function sizeOf(d: ShownDecision): number {
  let n = 64;
  for (const v of Object.values(d)) {
    if (typeof v === 'string') n += 16 + Buffer.byteLength(v);
    else if (typeof v === 'number') n += 16;
  }
  for (const s of d.trace) {
    n += 32 + Buffer.byteLength(s.check) + Buffer.byteLength(s.action);
    if (s.reason !== undefined) n += 16 + Buffer.byteLength(s.reason);
    if (s.code !== undefined) n += 16;
    if (s.ms !== undefined) n += 16;
  }
  return n;
}

interface Minute {
  /** Minute number (ms / 60000). */
  readonly at: number;
  readonly checks: Map<string, ActionCounts>;
}

/**
 * What the status page shows, kept in memory: the latest decisions (bounded in entries and in
 * bytes, oldest dropped first) and, for the last hour, per-minute counts of the decisions by the
 * check that made them and by action. It is fed by the decision hook of `serve` and `policy`;
 * addresses are rewritten to the privacy level before they are kept, so the page never holds more
 * than the log does.
 */
export class StatusBoard {
  /** How addresses are kept. */
  readonly redactor: Redactor;
  /** Entries kept at most. */
  readonly maxEntries: number;
  /** Bytes kept at most. */
  readonly maxBytes: number;
  readonly #clock: Clock;
  readonly #maxChecks: number;
  /** Oldest first. */
  #entries: { d: ShownDecision; bytes: number }[] = [];
  #bytes = 0;
  #minutes: Minute[] = [];
  #total = 0;
  /** When the board started counting, ms since the epoch. */
  readonly since: number;

  constructor(options: StatusBoardOptions) {
    this.#clock = options.clock;
    this.redactor = options.redactor ?? new Redactor('full');
    this.maxEntries = options.maxEntries ?? 500;
    this.maxBytes = options.maxBytes ?? 2 * 1024 * 1024;
    this.#maxChecks = options.maxChecks ?? 64;
    for (const [k, v] of [
      ['maxEntries', this.maxEntries],
      ['maxBytes', this.maxBytes],
      ['maxChecks', this.#maxChecks],
    ] as const) {
      if (!Number.isInteger(v) || v < 1) throw new TypeError(`StatusBoard: ${k} must be a whole number >= 1`);
    }
    this.since = this.#clock.now();
  }

  /**
   * Records one evaluation of the chain, made at `at` (ms since the epoch; default now on the
   * board's clock), with the adapter's session id when it has one.
   */
  record(session: Session, d: Decision, id?: string | number, at?: number): void {
    // The whole trace, whatever the log line carries: the page is where an admin reads why.
    this.add(decisionRecord(session, d, id, { trace: 'full' }), at);
  }

  /** Records one decision log record (the fields of {@link decisionRecord}). */
  add(record: Record<string, unknown>, at?: number): void {
    const now = at ?? this.#clock.now();
    const d = shown(this.redactor.record(record), now);
    const bytes = sizeOf(d);
    this.#entries.push({ d, bytes });
    this.#bytes += bytes;
    while (
      this.#entries.length > this.maxEntries ||
      (this.#bytes > this.maxBytes && this.#entries.length > 0)
    ) {
      const old = this.#entries.shift();
      if (old) this.#bytes -= old.bytes;
    }
    this.#count(now, d.would !== undefined ? (d.would as Action) : (d.action as Action), d.check);
    this.#total++;
  }

  #count(now: number, action: Action, check: string | undefined): void {
    const at = Math.floor(now / MINUTE);
    this.#prune(at);
    let m = this.#minutes[this.#minutes.length - 1];
    if (!m || m.at !== at) {
      m = { at, checks: new Map() };
      this.#minutes.push(m);
    }
    let name = action === 'next' ? PASSED : (check ?? PASSED);
    if (!m.checks.has(name) && m.checks.size >= this.#maxChecks) name = OTHER;
    let c = m.checks.get(name);
    if (!c) {
      c = { reject: 0, defer: 0, accept: 0, next: 0 };
      m.checks.set(name, c);
    }
    if (action in c) c[action]++;
  }

  /** Drops the minutes older than the last hour before minute `at`. */
  #prune(at: number): void {
    while (this.#minutes.length > 0 && (this.#minutes[0] as Minute).at <= at - MINUTES) this.#minutes.shift();
  }

  /** The entries kept, newest first. */
  latest(): ShownDecision[] {
    return this.#entries.map((e) => e.d).reverse();
  }

  /** Bytes held by the entries, as counted for {@link maxBytes}. */
  get bytes(): number {
    return this.#bytes;
  }

  /** Decisions recorded since the start. */
  get total(): number {
    return this.#total;
  }

  /**
   * The last hour, one slot a minute, oldest first, ending with the current minute: the counts by
   * check in each (empty minutes included).
   */
  lastHour(): {
    /** The minute's start, ms since the epoch. */
    readonly at: number;
    /** The counts by check in that minute. */
    readonly checks: ReadonlyMap<string, ActionCounts>;
  }[] {
    const now = Math.floor(this.#clock.now() / MINUTE);
    this.#prune(now);
    const byMinute = new Map(this.#minutes.map((m) => [m.at, m.checks]));
    const out: { at: number; checks: ReadonlyMap<string, ActionCounts> }[] = [];
    for (let at = now - MINUTES + 1; at <= now; at++) {
      out.push({ at: at * MINUTE, checks: byMinute.get(at) ?? new Map() });
    }
    return out;
  }
}

type Action = keyof ActionCounts;
