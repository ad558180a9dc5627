import type {
  Action,
  Check,
  CheckContext,
  Clock,
  FinalVerdict,
  Finding,
  Logger,
  Reply,
  Session,
  Stage,
  Verdict,
} from './model.js';
import { STAGES, silentLogger, stageIndex, systemClock } from './model.js';
import { reply as makeReply } from './reply.js';
import { headerError, headerPoints } from './weigh.js';

/** Where a rejected client can get help; appended to every reject and defer text. */
export interface Help {
  /** A URL with the site's policy or an unblock form. */
  readonly url?: string;
  /** An address or phone number for people. */
  readonly contact?: string;
}

/** A check in a chain, with how it is enforced. */
export interface Link {
  /** The check. */
  readonly check: Check;
  /** `warn`: log what the check would have done, then go on (Postfix `warn_if_reject`). Default `enforce`. */
  readonly mode?: 'enforce' | 'warn';
}

/** One step of an evaluation, for the log and for the reply. */
export interface TraceStep {
  /** The check's name. */
  readonly check: string;
  /** What the check said; `skip` when its stage is not reached or is judged at another time. */
  readonly action: Action | 'skip' | 'error';
  /** The reply code of a decision. */
  readonly code?: number;
  /** Its enhanced status code. */
  readonly enhanced?: string;
  /** Why, as the check said it. */
  readonly reason?: string;
  /** True when the check is in warn mode: its verdict was logged, not enforced. */
  readonly warn?: boolean;
  /** The defer was a DEFER_IF_PERMIT. */
  readonly ifPermit?: boolean;
  /** The check's findings. */
  readonly findings?: readonly Finding[];
  /** Milliseconds spent in the check. */
  readonly ms: number;
}

/** The outcome of one evaluation of a chain. */
export interface Decision {
  /** What the chain decided: `next` when no link decided (the MTA's own rules go on). */
  readonly action: Action;
  /** The reply to send; absent for `next`. Reject and defer texts name the check and the help. */
  readonly reply?: Reply;
  /** The check that decided. */
  readonly check?: string;
  /** Why, for the log: the evidence, not the reply text. */
  readonly reason?: string;
  /** Every link, in order, with what it said and how long it took. */
  readonly trace: readonly TraceStep[];
  /** Every finding of the evaluation (scores and doubts), enforced links only. */
  readonly findings: readonly Finding[];
  /**
   * In a dry run ({@link dryRun}): the decision the chain came to and did not enforce. `action` is
   * then `next`.
   */
  readonly would?: {
    /** What it would have done. */
    readonly action: Action;
    /** The reply it would have sent. */
    readonly reply?: Reply;
    /** The check that would have decided. */
    readonly check?: string;
    /** Why. */
    readonly reason?: string;
  };
}

/** Options of {@link chain}. */
export interface ChainOptions {
  /**
   * Postfix `smtpd_delay_reject`: checks of the connect, HELO and MAIL stages are judged at RCPT TO,
   * so the client learns the verdict once it has said who the mail is for (and we log the whole
   * envelope). When false, each check is judged at its own stage.
   * @default true
   */
  readonly delayReject?: boolean;
  /** Where to get help, appended to reject and defer texts. */
  readonly help?: Help;
  /**
   * What a check that throws turns into. `defer` (451 4.3.5, as Postfix answers when a policy
   * service fails) or `next` (skip the check). Never a 5xx.
   * @default 'defer'
   */
  readonly onError?: 'defer' | 'next';
  /** Name of the chain when it is nested as a link of another. @default 'chain' */
  readonly name?: string;
  /** Clock handed to the checks. @default systemClock */
  readonly clock?: Clock;
  /** Logger handed to the checks. @default silentLogger */
  readonly log?: Logger;
  /** High-resolution timer for the trace's `ms`. @default performance.now */
  readonly timer?: () => number;
}

/** A chain: an ordered list of checks, itself usable as a check. */
export interface Chain extends Check {
  /** Its links, in order. */
  readonly links: readonly Link[];
  /**
   * Judges one session: runs the links of its stage in order (Postfix semantics: the first
   * decision ends it) and says what to answer. `extraFindings` join the links' findings (an
   * adapter's own, such as a doubt from an earlier stage).
   */
  evaluate(session: Session, extraFindings?: readonly Finding[]): Promise<Decision>;
}

const MAX_TEXT = 400;

/** The reply text with the deciding check and where to get help, kept on one line and bounded. */
export function decorate(r: Reply, check: string, help: Help | undefined): Reply {
  const where = [help?.url, help?.contact].filter((s): s is string => !!s).join(' or ');
  const suffix = where ? ` (${check}; help: ${where})` : ` (${check})`;
  let text = r.text.replace(/[\r\n]+/g, ' ');
  if (text.length + suffix.length > MAX_TEXT) text = `${text.slice(0, MAX_TEXT - suffix.length - 3)}...`;
  return { code: r.code, enhanced: r.enhanced, text: text + suffix };
}

interface Pending {
  readonly verdict: FinalVerdict;
  readonly check: string;
}

function isThenable(v: Verdict | Promise<Verdict>): v is Promise<Verdict> {
  return typeof (v as { then?: unknown }).then === 'function';
}

/** The decision of an evaluation that ended with `verdict` from `check` (none: the chain ran out). */
function finish(
  verdict: FinalVerdict | undefined,
  check: string | undefined,
  pending: Pending | undefined,
  trace: TraceStep[],
  findings: Finding[],
  help: Help | undefined,
): Decision {
  let v = verdict;
  let by = check;
  if (pending && (!v || v.action === 'accept')) {
    v = Object.assign({}, pending.verdict, { ifPermit: false });
    by = pending.check;
  }
  if (!v || by === undefined) return { action: 'next', trace, findings };
  const r = v.action === 'accept' ? v.reply : decorate(v.reply, by, help);
  return { action: v.action, reply: r, check: by, reason: v.reason, trace, findings };
}

function isFinal(v: Verdict): v is FinalVerdict {
  return v.action !== 'next';
}

/** Which links run at this stage. */
function runsNow(linkStage: Stage, stage: Stage, delayReject: boolean): boolean {
  const l = stageIndex(linkStage);
  const s = stageIndex(stage);
  if (stage === 'data') return linkStage === 'data';
  if (delayReject) return s === stageIndex('rcpt') && l <= s;
  return l === s;
}

/**
 * Builds a chain that evaluates its links in order until one says something other than `next`,
 * with Postfix's semantics:
 * - `accept` (OK) ends the evaluation and allows.
 * - `reject`/`defer` end it with their reply.
 * - `defer` with `ifPermit` (DEFER_IF_PERMIT) is remembered; a later reject still wins, and an
 *   accept or the end of the chain turns into that defer.
 * - a link in warn mode is logged and treated as `next`.
 * - with delay-reject, connect/HELO/MAIL checks are judged at RCPT.
 */
export function chain(links: readonly (Check | Link)[], options: ChainOptions = {}): Chain {
  const normalised: Link[] = links.map((l) => ('check' in l ? l : { check: l }));
  const names = new Set<string>();
  for (const l of normalised) {
    if (names.has(l.check.name)) throw new TypeError(`check "${l.check.name}" appears twice in the chain`);
    names.add(l.check.name);
  }
  // Received headers never decide a refusal (DESIGN principle 3): no weigh may be reachable by the
  // points of the enforced header-reading links before it (and its own) alone.
  const readers: Check[] = [];
  for (const l of normalised) {
    const w = l.check.weighs;
    if (w) {
      const earlier = w.earlier ? headerPoints(readers) : 0;
      if (earlier + w.headerPoints >= w.refusesAt)
        throw new TypeError(headerError(l.check.name, w.refusesAt, readers));
    }
    if (l.check.readsHeaders && l.mode !== 'warn') readers.push(l.check);
  }
  const delayReject = options.delayReject ?? true;
  const clock = options.clock ?? systemClock;
  const log = options.log ?? silentLogger;
  const timer = options.timer ?? (() => performance.now());
  const onError = options.onError ?? 'defer';
  const name = options.name ?? 'chain';
  const lastStage = normalised.reduce<Stage>(
    (acc, l) => (stageIndex(l.check.stage) > stageIndex(acc) ? l.check.stage : acc),
    'connect',
  );
  // Which links run at each stage, worked out once here rather than once a link an evaluation.
  const byStage = new Map<Stage, readonly Link[]>();
  for (const st of STAGES)
    byStage.set(
      st,
      normalised.filter((l) => runsNow(l.check.stage, st, delayReject)),
    );
  const help = options.help;

  async function evaluate(session: Session, extraFindings?: readonly Finding[]): Promise<Decision> {
    const trace: TraceStep[] = [];
    const findings: Finding[] = extraFindings && extraFindings.length > 0 ? [...extraFindings] : [];
    let pending: Pending | undefined;
    // One context for the whole evaluation: `findings` is the same array throughout.
    const ctx: CheckContext = { clock, log, findings };
    const links =
      byStage.get(session.stage) ??
      normalised.filter((l) => runsNow(l.check.stage, session.stage, delayReject));
    // One clock reading a link: the end of one link is the start of the next.
    let mark = links.length > 0 ? timer() : 0;

    for (let i = 0; i < links.length; i++) {
      const link = links[i] as Link;
      const check = link.check;
      let verdict: Verdict;
      try {
        const out = check.run(session, ctx);
        // A check that answers at once is not sent round the microtask queue.
        verdict = isThenable(out) ? await out : out;
      } catch (err) {
        const ms = timer() - mark;
        const message = err instanceof Error ? err.message : String(err);
        log.error({ check: check.name, err: message, client: session.clientAddress }, 'check failed');
        trace.push({ check: check.name, action: 'error', reason: message, ms });
        if (onError === 'defer') {
          const r = makeReply(451, '4.3.5', 'Server configuration problem');
          return finish(
            { action: 'defer', reply: r, reason: `check ${check.name} failed: ${message}` },
            check.name,
            pending,
            trace,
            findings,
            help,
          );
        }
        mark = timer();
        continue;
      }
      const now = timer();
      const ms = now - mark;
      mark = now;
      const warnMode = link.mode === 'warn';
      trace.push(stepOf(check.name, verdict, ms, warnMode));
      if (warnMode) {
        if (isFinal(verdict)) {
          log.warn(
            {
              check: check.name,
              would: verdict.action,
              reason: verdict.reason,
              client: session.clientAddress,
            },
            'warn mode: not enforced',
          );
        }
        continue;
      }
      if (verdict.findings) for (const f of verdict.findings) findings.push(f);
      if (!isFinal(verdict)) continue;
      if (verdict.action === 'defer' && verdict.ifPermit) {
        pending ??= { verdict, check: check.name };
        continue;
      }
      return finish(verdict, check.name, pending, trace, findings, help);
    }
    return finish(undefined, undefined, pending, trace, findings, help);
  }

  return {
    name,
    stage: lastStage,
    links: normalised,
    evaluate,
    async run(session) {
      const d = await evaluate(session);
      if (d.action === 'next' || !d.reply) return { action: 'next', findings: d.findings };
      return { action: d.action, reply: d.reply, reason: d.reason ?? '', findings: d.findings };
    },
  };
}

function stepOf(check: string, v: Verdict, ms: number, warn: boolean): TraceStep {
  const rounded = Math.round(ms * 1000) / 1000;
  // The common steps (a `next` with or without its reason) made whole in one literal each: no
  // property added afterwards, so no object grows a second allocation for it.
  if (!warn && v.action === 'next' && (v.findings === undefined || v.findings.length === 0)) {
    return v.reason === undefined
      ? { check, action: 'next', ms: rounded }
      : { check, action: 'next', ms: rounded, reason: v.reason };
  }
  const base: {
    check: string;
    action: Action;
    ms: number;
    reason?: string;
    code?: number;
    enhanced?: string;
    warn?: boolean;
    ifPermit?: boolean;
    findings?: readonly Finding[];
  } = { check, action: v.action, ms: rounded };
  if (v.reason !== undefined) base.reason = v.reason;
  if (v.findings && v.findings.length > 0) base.findings = v.findings;
  if (isFinal(v)) {
    base.code = v.reply.code;
    base.enhanced = v.reply.enhanced;
    if (v.ifPermit) base.ifPermit = true;
  }
  if (warn) base.warn = true;
  return base;
}

/**
 * A global dry run (config `"mode": "warn"`): every session is judged by the whole chain and the
 * decision is logged, but nothing is refused: every decision comes back as `next` (Postfix DUNNO),
 * with what it would have been in `would`. An `accept` is not enforced either, so the MTA's own
 * restrictions still run as they would without mxguard.
 */
export function dryRun(inner: Chain): Chain {
  async function evaluate(session: Session, extraFindings?: readonly Finding[]): Promise<Decision> {
    const d = await inner.evaluate(session, extraFindings);
    if (d.action === 'next') return d;
    const would: {
      action: Action;
      reply?: Reply;
      check?: string;
      reason?: string;
    } = { action: d.action };
    if (d.reply) would.reply = d.reply;
    if (d.check !== undefined) would.check = d.check;
    if (d.reason !== undefined) would.reason = d.reason;
    return { action: 'next', trace: d.trace, findings: d.findings, would };
  }
  // spread: once
  return {
    ...inner,
    evaluate,
    async run(session) {
      const d = await evaluate(session);
      return { action: 'next', findings: d.findings };
    },
  };
}
