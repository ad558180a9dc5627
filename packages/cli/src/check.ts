import { isIP } from 'node:net';
import { createInterface } from 'node:readline';
import type { Readable, Writable } from 'node:stream';
import type { Decision, Finding, ReverseDns, Session, Stage } from '@mxguard/core';
import type { Runtime } from './runtime.js';

/** One session as `mxguard check` reads it, one JSON object a line. */
export interface CheckInput {
  /** The client's IP address. */
  ip: string;
  /** The client's TCP port. */
  port?: number;
  /** The HELO/EHLO argument. */
  helo?: string;
  /** Known reverse name (treated as verified, as Postfix's client_name); `null`: the client has none. */
  ptr?: string | null;
  /** MAIL FROM without angle brackets; `''` is the null sender. */
  mailFrom?: string;
  /** A recipient, or several: each is judged and answered on its own. */
  rcptTo?: string | string[];
  /** Unix seconds: the clock for this session, for deterministic replays. */
  time?: number;
  /** The client used STARTTLS. */
  tls?: boolean;
  /** The SASL login name, when the client authenticated. */
  authUser?: string;
  /** Facts an adapter would have found (`earlyTalker`, `unauthorizedPipelining`, ...). */
  flags?: Record<string, boolean | number | string>;
  /** The message's header block, for DATA-stage checks that read it (`received`). */
  headers?: string;
}

/** A verdict line as `mxguard check` writes it. */
export interface CheckOutput {
  /** What the chain decided (`next`: no link decided). */
  action: Decision['action'];
  /** In a dry run (`"mode": "warn"`): what would have been done; `action` is then `next`. */
  would?: Decision['action'];
  /** The reply's code, for a decision. */
  code?: number;
  /** The reply's enhanced status code. */
  enhanced?: string;
  /** The reply's text. */
  text?: string;
  /** The check that decided. */
  check?: string;
  /** Why, for the log. */
  reason?: string;
  /** Every link, with what it said. */
  trace: Decision['trace'];
  /** Per recipient, when `rcptTo` was a list. */
  recipients?: (Omit<CheckOutput, 'recipients' | 'notes'> & {
    /** The recipient this verdict is for. */
    rcptTo: string;
  })[];
  /** What the run could not do (offline DNS, ...), on the first line only. */
  notes?: string[];
}

const MAX_LINE = 64 * 1024;

/** Parses and validates one input line; throws an Error whose message says what is wrong. */
export function parseInput(line: string): CheckInput {
  if (line.length > MAX_LINE) throw new Error(`line longer than ${MAX_LINE} characters`);
  let v: unknown;
  try {
    v = JSON.parse(line);
  } catch (err) {
    throw new Error(`not JSON: ${err instanceof Error ? err.message : String(err)}`);
  }
  if (v === null || typeof v !== 'object' || Array.isArray(v)) throw new Error('must be a JSON object');
  const o = v as Record<string, unknown>;
  const str = (k: string) => {
    if (o[k] !== undefined && typeof o[k] !== 'string') throw new Error(`"${k}" must be a string`);
  };
  if (typeof o.ip !== 'string' || isIP(o.ip.replace(/^::ffff:(?=\d+\.)/i, '')) === 0) {
    throw new Error('"ip" must be an IPv4 or IPv6 address');
  }
  for (const k of ['helo', 'mailFrom', 'authUser', 'headers']) str(k);
  if (o.ptr !== undefined && o.ptr !== null && typeof o.ptr !== 'string')
    throw new Error('"ptr" must be a string or null');
  if (o.rcptTo !== undefined) {
    const ok =
      typeof o.rcptTo === 'string' ||
      (Array.isArray(o.rcptTo) &&
        o.rcptTo.length > 0 &&
        o.rcptTo.length <= 1000 &&
        o.rcptTo.every((r) => typeof r === 'string'));
    if (!ok) throw new Error('"rcptTo" must be a string or a non-empty list of at most 1000 strings');
  }
  if (o.time !== undefined && (typeof o.time !== 'number' || !Number.isFinite(o.time) || o.time < 0)) {
    throw new Error('"time" must be Unix seconds');
  }
  if (
    o.port !== undefined &&
    (!Number.isInteger(o.port) || (o.port as number) < 0 || (o.port as number) > 65535)
  ) {
    throw new Error('"port" must be a port number');
  }
  if (o.tls !== undefined && typeof o.tls !== 'boolean') throw new Error('"tls" must be true or false');
  if (o.flags !== undefined && (o.flags === null || typeof o.flags !== 'object' || Array.isArray(o.flags))) {
    throw new Error('"flags" must be an object');
  }
  return o as unknown as CheckInput;
}

function rdnsOf(input: CheckInput): ReverseDns | undefined {
  if (input.ptr === undefined) return undefined;
  if (input.ptr === null) return { names: [] };
  const name = input.ptr.toLowerCase().replace(/\.$/, '');
  return { names: [name], verified: name };
}

function toOutput(d: Decision): Omit<CheckOutput, 'recipients' | 'notes'> {
  const out: Omit<CheckOutput, 'recipients' | 'notes' | 'trace'> = { action: d.action };
  // In a dry run the decision not enforced is shown with its reply, beside `action: next`.
  const shown = d.would ?? d;
  if (d.would) out.would = d.would.action;
  if (shown.reply && shown.action !== 'next') {
    out.code = shown.reply.code;
    out.enhanced = shown.reply.enhanced;
    out.text = shown.reply.text;
  }
  if (shown.check !== undefined) out.check = shown.check;
  if (shown.reason !== undefined) out.reason = shown.reason;
  return { ...out, trace: d.trace };
}

const SEVERITY: Record<Decision['action'], number> = { reject: 3, defer: 2, next: 1, accept: 0 };

/**
 * Judges one session as a server would: the stages in order (with delay-reject the earlier ones
 * say nothing and everything is judged at RCPT), then each recipient, then DATA when a recipient
 * was accepted. The line's verdict is the first refusal before RCPT or at DATA, else the most
 * severe of the recipients' verdicts.
 */
export async function judge(input: CheckInput, rt: Runtime): Promise<CheckOutput> {
  rt.clock.set(input.time !== undefined ? Math.round(input.time * 1000) : undefined);
  const clientAddress = input.ip.replace(/^::ffff:(?=\d+\.)/i, '');
  let rdns = rdnsOf(input);
  if (rdns === undefined && rt.lookupRdns) rdns = await rt.lookupRdns(clientAddress);
  const base: Session = {
    clientAddress,
    stage: 'connect',
    ...(input.port !== undefined ? { clientPort: input.port } : {}),
    ...(rdns ? { rdns } : {}),
    ...(input.helo !== undefined ? { helo: input.helo } : {}),
    ...(input.mailFrom !== undefined ? { mailFrom: input.mailFrom.replace(/^<(.*)>$/, '$1') } : {}),
    ...(input.tls !== undefined ? { tls: input.tls } : {}),
    ...(input.authUser !== undefined ? { authUser: input.authUser } : {}),
    ...(input.flags ? { flags: input.flags } : {}),
  };
  rt.prefetch?.(base);
  const early: Stage[] = [
    'connect',
    ...(input.helo !== undefined ? (['helo'] as const) : []),
    ...(input.mailFrom !== undefined ? (['mail'] as const) : []),
  ];
  for (const stage of early) {
    const d = await rt.policy.chain.evaluate({ ...base, stage });
    if (d.action === 'reject' || d.action === 'defer') return toOutput(d);
  }
  const rcpts =
    input.rcptTo === undefined ? [] : typeof input.rcptTo === 'string' ? [input.rcptTo] : input.rcptTo;
  if (rcpts.length === 0) {
    // No recipient: judge what we have at RCPT time, so a HELO or sender check still answers.
    return toOutput(await rt.policy.chain.evaluate({ ...base, stage: 'rcpt' }));
  }
  const accepted: string[] = [];
  // The points of the last accepted recipient go on to DATA, where a `data`-stage weigh adds them up
  // with those of the header checks, as the smtp-server adapter does.
  let carried: readonly Finding[] = [];
  const results: (Omit<CheckOutput, 'recipients' | 'notes'> & { rcptTo: string })[] = [];
  for (const raw of rcpts) {
    const rcptTo = raw.replace(/^<(.*)>$/, '$1');
    const d = await rt.policy.chain.evaluate({ ...base, stage: 'rcpt', rcptTo, recipients: [...accepted] });
    if (d.action === 'accept' || d.action === 'next') {
      accepted.push(rcptTo);
      carried = d.findings.filter((f) => f.score);
    }
    results.push({ rcptTo, ...toOutput(d) });
  }
  if (accepted.length > 0) {
    // DATA, as the client would send it next: data-stage checks judge the transaction, and an
    // accepted message is what the reputation counts in the client's favour.
    const d = await rt.policy.chain.evaluate(
      {
        ...base,
        stage: 'data',
        recipients: accepted,
        ...(input.headers !== undefined ? { headers: input.headers } : {}),
      },
      carried,
    );
    if (d.action === 'reject' || d.action === 'defer') return toOutput(d);
  }
  const worst = results.reduce((a, b) =>
    SEVERITY[b.would ?? b.action] > SEVERITY[a.would ?? a.action] ? b : a,
  );
  const { rcptTo: _ignored, ...top } = worst;
  return typeof input.rcptTo === 'string' ? top : { ...top, recipients: results };
}

/**
 * `mxguard check`: JSON lines in, one verdict a line out, in order. A bad line gets
 * `{"error": ...}` on its line and the run goes on. Resolves to the number of bad lines.
 */
export async function runCheck(input: Readable, output: Writable, rt: Runtime): Promise<number> {
  const rl = createInterface({ input, crlfDelay: Number.POSITIVE_INFINITY });
  let bad = 0;
  let n = 0;
  let first = true;
  for await (const line of rl) {
    n += 1;
    if (line.trim() === '') continue;
    let out: object;
    try {
      const parsed = parseInput(line);
      const verdict = await judge(parsed, rt);
      out = first && rt.notes.length > 0 ? { ...verdict, notes: rt.notes } : verdict;
      first = false;
    } catch (err) {
      bad += 1;
      out = { error: `line ${n}: ${err instanceof Error ? err.message : String(err)}`, line: n };
    }
    if (!output.write(`${JSON.stringify(out)}\n`)) await new Promise((r) => output.once('drain', r));
  }
  return bad;
}
