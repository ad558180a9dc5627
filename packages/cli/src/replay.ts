/**
 * `mxguard replay`: try a policy on last month's mail before enforcing it. Reads a Postfix mail
 * log (or mxguard's own decision log), rebuilds each RCPT decision with its time, client, HELO,
 * sender and recipient, judges it with the given config (`judge`, as `mxguard check` does, with
 * the clock pinned to the logged time so greylisting and reputation replay in order), and reports
 * what each check would refuse, and where mxguard and the log disagree.
 */
import { readFile } from 'node:fs/promises';
import { type CheckInput, type CheckOutput, judge } from './check.js';
import type { Runtime } from './runtime.js';
import { UsageError } from './runtime.js';

/** One RCPT as the log tells it, and what the server that wrote the log answered. */
export interface LoggedRcpt {
  /** Unix seconds. */
  readonly time: number;
  /** The client's IP address. */
  readonly client: string;
  /** The client's verified name as Postfix logs it; `null` for `unknown`; absent when not logged. */
  readonly name?: string | null;
  /** The HELO name, when the log has it. */
  readonly helo?: string;
  /** The envelope sender; `''` is the null sender. */
  readonly from: string;
  /** The recipient. */
  readonly to: string;
  /** What the logging server did: accepted, refused for good, or deferred. */
  readonly logged: 'accept' | 'reject' | 'defer';
  /** Its reply, for a refusal (`550 5.1.1 <x>: Recipient address rejected: ...`). */
  readonly reply?: string;
  /** Postfix logged `reject_warning` (warn_if_reject): it would have refused, and accepted. */
  readonly warned?: boolean;
  /** `file:line` of the log line the decision comes from. */
  readonly source: string;
}

const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];

// `Dec  1 15:27:57 host prog[pid]: text` (syslog, Postfix's maillog_file) or
// `2026-12-01T15:27:57.123456+00:00 host prog[pid]: text` (RFC 3339 syslog).
const LINE =
  /^(?:([A-Z][a-z]{2}) +(\d{1,2}) (\d\d):(\d\d):(\d\d)|(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?(?:Z|[+-]\d\d:?\d\d)?)) \S+ ([\w./-]+)\[(\d+)\]: (.*)$/;
const RCPT_EVENT =
  /^(NOQUEUE|[0-9A-Za-z]+): (reject|reject_warning|permit|defer|hold|discard|filter|redirect|info|warn): RCPT from ([^[\s]*)\[([^\]]+)\]: (.*?); from=<([^>]*)> to=<([^>]*)>(?: proto=\S+)?(?: helo=<([^>]*)>)?/;
const QUEUE_CLIENT = /^([0-9A-Za-z]+): client=([^[\s]*)\[([^\]]+)\]/;
const QUEUE_FROM = /^([0-9A-Za-z]+): from=<([^>]*)>, size=/;
const QUEUE_TO = /^([0-9A-Za-z]+): to=<([^>]*)>,(?: orig_to=<([^>]*)>,)? /;

function secondsOf(m: RegExpExecArray, year: number): number | undefined {
  if (m[6]) {
    const t = Date.parse(m[6]);
    return Number.isFinite(t) ? t / 1000 : undefined;
  }
  const month = MONTHS.indexOf(m[1] as string);
  if (month < 0) return undefined;
  // Syslog lines have no year or zone: the year given (default: this one), UTC.
  return Date.UTC(year, month, Number(m[2]), Number(m[3]), Number(m[4]), Number(m[5])) / 1000;
}

const nameOf = (n: string): string | null => (n === '' || n === 'unknown' ? null : n.toLowerCase());

/**
 * Rebuilds the RCPT decisions of a Postfix 3.x log. Refusals come from `NOQUEUE: reject: RCPT
 * from ...` lines (and `reject_warning`, Postfix's `warn_if_reject`, counted as accepted with a
 * warning). Accepted recipients come from `permit:` lines when Postfix logs them
 * (`smtpd_log_access_permit_actions = static:all`), with their HELO; otherwise from the queue
 * lines (`client=`, `from=`, `to=`), which have no HELO. Lines of other programs are skipped.
 */
export function parsePostfixLog(
  text: string,
  options: { file?: string; year: number; now?: number },
): LoggedRcpt[] {
  const file = options.file ?? 'log';
  // Per smtpd process and RCPT: the last permit and whether a refusal followed.
  interface Pending {
    time: number;
    client: string;
    name: string | null;
    helo?: string;
    from: string;
    to: string;
    logged: LoggedRcpt['logged'];
    reply?: string;
    warned?: boolean;
    source: string;
  }
  const rcpts: Pending[] = [];
  const open = new Map<string, Pending>(); // pid|from|to -> the RCPT being logged
  const byQueue = new Map<
    string,
    { time: number; client: string; name: string | null; from?: string; covered: boolean }
  >();
  const seen = new Set<string>(); // queue id|recipient already counted (one decision, many delivery attempts)
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const m = LINE.exec(lines[i] as string);
    if (!m) continue;
    const prog = m[7] as string;
    const pid = m[8] as string;
    const msg = m[9] as string;
    let time = secondsOf(m, options.year);
    if (time === undefined) continue;
    // A syslog date still to come is last year's (a December log read in January).
    if (!m[6] && options.now !== undefined && time > options.now + 86_400)
      time = secondsOf(m, options.year - 1) as number;
    const source = `${file}:${i + 1}`;
    if (/\/smtpd$/.test(prog)) {
      if (msg.startsWith('connect from ') || msg.startsWith('disconnect from ')) {
        for (const k of [...open.keys()]) if (k.startsWith(`${pid}|`)) open.delete(k);
        continue;
      }
      const r = RCPT_EVENT.exec(msg);
      if (r) {
        const action = r[2] as string;
        const from = r[6] as string;
        const to = r[7] as string;
        const key = `${pid}|${from}|${to}`;
        const base = {
          time,
          client: r[4] as string,
          name: nameOf(r[3] as string),
          from,
          to,
          source,
          ...(r[8] !== undefined ? { helo: r[8] } : {}),
        };
        if (action === 'permit' || action === 'info' || action === 'warn') {
          // A permit may be a relay restriction's, with recipient restrictions still to come: the
          // RCPT is accepted unless a refusal for it follows.
          if (!open.has(key)) {
            const p: Pending = { ...base, logged: 'accept' };
            open.set(key, p);
            rcpts.push(p);
          }
          continue;
        }
        if (action === 'reject' || action === 'defer' || action === 'reject_warning') {
          const reply = r[5] as string;
          const code = Number(/^(\d{3})/.exec(reply)?.[1] ?? 0);
          const refused: Pending = {
            ...base,
            logged: action === 'reject_warning' ? 'accept' : code >= 500 ? 'reject' : 'defer',
            reply,
            ...(action === 'reject_warning' ? { warned: true } : {}),
          };
          const p = open.get(key);
          if (p) Object.assign(p, refused);
          else rcpts.push(refused);
          open.delete(key);
          continue;
        }
        continue;
      }
      const q = QUEUE_CLIENT.exec(msg);
      if (q) {
        // The RCPTs permitted so far in this connection are in this queue file: when Postfix
        // logged them (permit lines), the queue lines add nothing.
        let covered = false;
        for (const k of [...open.keys()]) {
          if (!k.startsWith(`${pid}|`)) continue;
          covered = true;
          open.delete(k);
        }
        byQueue.set(q[1] as string, { time, client: q[3] as string, name: nameOf(q[2] as string), covered });
      }
      continue;
    }
    if (/\/qmgr$/.test(prog)) {
      const f = QUEUE_FROM.exec(msg);
      const q = f && byQueue.get(f[1] as string);
      if (q) q.from = f[2] as string;
      continue;
    }
    const t = QUEUE_TO.exec(msg);
    if (t) {
      const q = byQueue.get(t[1] as string);
      if (!q || q.from === undefined || q.covered) continue;
      const to = (t[3] ?? t[2]) as string;
      const key = `${t[1]}|${to}`;
      if (seen.has(key)) continue;
      seen.add(key);
      rcpts.push({
        time: q.time,
        client: q.client,
        name: q.name,
        from: q.from,
        to,
        logged: 'accept',
        source,
      });
    }
  }
  return rcpts.sort((a, b) => a.time - b.time);
}

/**
 * Reads mxguard's own decision log (JSON lines with `event: "decision"` at stage `rcpt`), so a
 * policy can be tried on what an earlier policy saw.
 */
export function parseDecisionLog(text: string, options: { file?: string } = {}): LoggedRcpt[] {
  const file = options.file ?? 'log';
  const out: LoggedRcpt[] = [];
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const line = (lines[i] as string).trim();
    if (!line.startsWith('{')) continue;
    let o: Record<string, unknown>;
    try {
      o = JSON.parse(line) as Record<string, unknown>;
    } catch {
      continue;
    }
    const d = (o.decision && typeof o.decision === 'object' ? o.decision : o) as Record<string, unknown>;
    if ((o.event ?? d.event) !== 'decision' || (d.stage ?? o.stage) !== 'rcpt') continue;
    const str = (...vals: unknown[]) => vals.find((v): v is string => typeof v === 'string');
    const client = str(d.client, d.clientAddress, o.client);
    const to = str(d.to, d.rcptTo, o.to);
    if (!client || !to) continue;
    const rawTime = o.time ?? d.time;
    const time =
      typeof rawTime === 'number'
        ? rawTime > 1e11
          ? rawTime / 1000
          : rawTime
        : typeof rawTime === 'string'
          ? Date.parse(rawTime) / 1000
          : Number.NaN;
    if (!Number.isFinite(time)) continue;
    const action = str(d.action, o.action);
    const code = Number(d.code ?? o.code ?? 0);
    const helo = str(d.helo, o.helo);
    out.push({
      time,
      client,
      from: str(d.from, d.mailFrom, o.from) ?? '',
      to,
      ...(helo !== undefined ? { helo } : {}),
      logged: action === 'reject' ? 'reject' : action === 'defer' ? 'defer' : 'accept',
      ...(code ? { reply: `${code} ${str(d.enhanced) ?? ''} ${str(d.text, d.reason) ?? ''}`.trim() } : {}),
      source: `${file}:${i + 1}`,
    });
  }
  return out.sort((a, b) => a.time - b.time);
}

/** One disagreement, for the review lists. */
export interface ReplayRow {
  /** The logged recipient. */
  readonly rcpt: LoggedRcpt;
  /** What this policy answers for it. */
  readonly verdict: Pick<CheckOutput, 'action' | 'code' | 'enhanced' | 'text' | 'check' | 'reason'>;
}

/** What `replay` found. */
export interface ReplayReport {
  /** Recipients judged. */
  readonly decisions: number;
  /** Decisions without a logged HELO (a stock Postfix log's accepted mail). */
  readonly withoutHelo: number;
  /** Per check: what it would refuse. */
  readonly byCheck: Readonly<
    Record<
      string,
      {
        /** Recipients it would refuse for good (5xx). */
        reject: number;
        /** Recipients it would defer (4xx). */
        defer: number;
      }
    >
  >;
  /** Recipients this policy would refuse for good. */
  readonly wouldReject: number;
  /** Recipients this policy would defer. */
  readonly wouldDefer: number;
  /** Accepted in the log, refused by this policy: review these for honest senders. */
  readonly newlyRefused: readonly ReplayRow[];
  /** Refused in the log, accepted by this policy. */
  readonly newlyAccepted: readonly ReplayRow[];
}

/** Judges every logged RCPT with the runtime's policy, in time order. */
export async function replay(rcpts: readonly LoggedRcpt[], rt: Runtime): Promise<ReplayReport> {
  const byCheck: Record<string, { reject: number; defer: number }> = {};
  const newlyRefused: ReplayRow[] = [];
  const newlyAccepted: ReplayRow[] = [];
  let wouldReject = 0;
  let wouldDefer = 0;
  let withoutHelo = 0;
  for (const rcpt of rcpts) {
    if (rcpt.helo === undefined) withoutHelo++;
    const input: CheckInput = {
      ip: rcpt.client,
      rcptTo: rcpt.to,
      mailFrom: rcpt.from,
      time: rcpt.time,
      ...(rcpt.helo !== undefined ? { helo: rcpt.helo } : {}),
      ...(rcpt.name !== undefined ? { ptr: rcpt.name } : {}),
    };
    const v = await judge(input, rt);
    const refused = v.action === 'reject' || v.action === 'defer';
    if (refused) {
      const c = v.check ?? '(chain)';
      byCheck[c] ??= { reject: 0, defer: 0 };
      (byCheck[c] as { reject: number; defer: number })[v.action as 'reject' | 'defer']++;
      if (v.action === 'reject') wouldReject++;
      else wouldDefer++;
    }
    const { action, code, enhanced, text, check, reason } = v;
    const verdict = {
      action,
      ...(code !== undefined ? { code } : {}),
      ...(enhanced !== undefined ? { enhanced } : {}),
      ...(text !== undefined ? { text } : {}),
      ...(check !== undefined ? { check } : {}),
      ...(reason !== undefined ? { reason } : {}),
    };
    if (refused && rcpt.logged === 'accept') newlyRefused.push({ rcpt, verdict });
    if (!refused && rcpt.logged !== 'accept') newlyAccepted.push({ rcpt, verdict });
  }
  return {
    decisions: rcpts.length,
    withoutHelo,
    byCheck,
    wouldReject,
    wouldDefer,
    newlyRefused,
    newlyAccepted,
  };
}

function when(t: number): string {
  return new Date(t * 1000).toISOString().replace('.000Z', 'Z');
}

function who(r: LoggedRcpt): string {
  const name = r.name === undefined ? '' : ` (${r.name ?? 'unknown'})`;
  return `${when(r.time)} ${r.client}${name} helo=<${r.helo ?? '?'}> from=<${r.from}> to=<${r.to}>`;
}

/** The report as an admin reads it. */
export function formatReport(report: ReplayReport, notes: readonly string[] = []): string {
  const out: string[] = [];
  out.push(`replayed ${report.decisions} RCPT decisions`);
  for (const n of notes) out.push(`note: ${n}`);
  if (report.withoutHelo > 0)
    out.push(
      `note: ${report.withoutHelo} without a logged HELO (Postfix logs it for accepted mail only with smtpd_log_access_permit_actions = static:all); HELO checks did not see them`,
    );
  out.push(
    `would refuse: ${report.wouldReject + report.wouldDefer} (reject ${report.wouldReject}, defer ${report.wouldDefer})`,
  );
  const checks = Object.entries(report.byCheck).sort(
    (a, b) => b[1].reject + b[1].defer - (a[1].reject + a[1].defer),
  );
  if (checks.length > 0) {
    out.push('by check:');
    for (const [c, n] of checks) out.push(`  ${c.padEnd(24)} reject ${n.reject}  defer ${n.defer}`);
  }
  out.push(
    `accepted in the log, refused by this policy (review for honest senders): ${report.newlyRefused.length}`,
  );
  for (const r of report.newlyRefused) {
    const reply = [r.verdict.code, r.verdict.enhanced, r.verdict.text]
      .filter((x) => x !== undefined)
      .join(' ');
    out.push(`  ${who(r.rcpt)}: ${reply} [${r.verdict.check ?? ''}]`);
  }
  out.push(`refused in the log, accepted by this policy: ${report.newlyAccepted.length}`);
  for (const r of report.newlyAccepted) out.push(`  ${who(r.rcpt)}: was ${r.rcpt.reply ?? r.rcpt.logged}`);
  return `${out.join('\n')}\n`;
}

/**
 * Reads log files, each as Postfix lines or, when its first non-empty line is a JSON object, as
 * mxguard decision lines; the decisions of all files in time order.
 */
export async function readLogs(
  files: readonly string[],
  options: { year?: number; now: number },
): Promise<LoggedRcpt[]> {
  const year = options.year ?? new Date(options.now * 1000).getUTCFullYear();
  const all: LoggedRcpt[] = [];
  for (const file of files) {
    let text: string;
    try {
      text = await readFile(file, 'utf8');
    } catch (err) {
      throw new UsageError(`cannot read ${file}: ${err instanceof Error ? err.message : String(err)}`);
    }
    const first = text.split('\n').find((l) => l.trim() !== '') ?? '';
    all.push(
      ...(first.trim().startsWith('{')
        ? parseDecisionLog(text, { file })
        : parsePostfixLog(text, { file, year, now: options.now })),
    );
  }
  return all.sort((a, b) => a.time - b.time);
}
