import type { Decision, TraceStep } from './chain.js';
import type { Logger, Session } from './model.js';

/**
 * How much of a decision's trace its log line carries.
 * - `said`: only the steps that said something (see {@link saidSteps}), as rspamd logs only the
 *   symbols that fired and Postfix only what it refused; `steps` still counts every link evaluated.
 * - `full`: every step, `next` ones included.
 */
export type LogTrace = 'said' | 'full';

/** The values of {@link LogTrace}, for flags and config keys that take one. */
export const LOG_TRACES: readonly LogTrace[] = ['said', 'full'];

/** Options of {@link decisionRecord}. */
export interface DecisionRecordOptions {
  /** How much of the trace the record carries. @default 'said' */
  readonly trace?: LogTrace;
}

/**
 * Whether a trace step said something: it decided (an action other than `next` and `skip`, which
 * is a link that did not run), it failed (`error`), it is in warn mode (what it would have done), or
 * it has findings (a score or a doubt). A link that had no opinion says nothing.
 */
export function stepSaid(step: TraceStep): boolean {
  return (
    (step.action !== 'next' && step.action !== 'skip') ||
    step.warn === true ||
    (step.findings !== undefined && step.findings.length > 0)
  );
}

/**
 * The steps of a trace that said something ({@link stepSaid}), in order. The trace itself when every
 * step did (no copy).
 */
export function saidSteps(trace: readonly TraceStep[]): readonly TraceStep[] {
  let i = 0;
  while (i < trace.length && stepSaid(trace[i] as TraceStep)) i++;
  if (i === trace.length) return trace;
  const out = trace.slice(0, i);
  for (i++; i < trace.length; i++) {
    const s = trace[i] as TraceStep;
    if (stepSaid(s)) out.push(s);
  }
  return out;
}

/**
 * The fields of one `decision` log line, the same in every adapter (smtp-server, `mxguard serve`,
 * the Postfix policy server, Haraka), so one parser reads them all: the session it belongs to, the
 * stage, who and what was judged, the verdict with its reply, the check that decided, why, how many
 * links were evaluated (`steps`) and the trace: by default only the steps that said something
 * ({@link saidSteps}), every step with `{ trace: 'full' }`. The logger adds the time. In a global
 * dry run (`mode: "warn"`) `action` is what was answered (`next`) and `would` what would have been.
 */
export function decisionRecord(
  session: Session,
  d: Decision,
  id?: string | number,
  options?: DecisionRecordOptions,
): Record<string, unknown> {
  return {
    event: 'decision',
    session: id === undefined ? undefined : String(id),
    stage: session.stage,
    client: session.clientAddress,
    helo: session.helo,
    from: session.mailFrom,
    to: session.rcptTo,
    action: d.action,
    would: d.would?.action,
    code: d.would?.reply?.code ?? d.reply?.code,
    enhanced: d.would?.reply?.enhanced ?? d.reply?.enhanced,
    check: d.would?.check ?? d.check,
    reason: d.would?.reason ?? d.reason,
    text: d.would?.reply?.text ?? d.reply?.text,
    steps: d.trace.length,
    trace: options?.trace === 'full' ? d.trace : saidSteps(d.trace),
  };
}

/**
 * An adapter's `logTrace` option checked: `said` when absent, the value when it is one of
 * {@link LOG_TRACES}; anything else throws a TypeError that names `where` and the choices, so a
 * misspelt option is refused at start rather than read as the default.
 */
export function logTraceOf(value: unknown, where: string): LogTrace {
  if (value === undefined) return 'said';
  if (value === 'said' || value === 'full') return value;
  throw new TypeError(`${where}: logTrace must be 'said' or 'full', got ${JSON.stringify(value)}`);
}

/**
 * Writes a decision line: the logger's own `decision` when it has one, else `info(record,
 * 'decision')`. Every adapter writes its decision lines through this.
 */
export function logDecision(log: Logger, record: object): void {
  if (log.decision) log.decision(record);
  else log.info(record, 'decision');
}
