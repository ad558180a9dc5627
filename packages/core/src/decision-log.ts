import type { Decision } from './chain.js';
import type { Session } from './model.js';

/**
 * The fields of one `decision` log line, the same in every adapter (smtp-server, `mxguard serve`,
 * the Postfix policy server, Haraka), so one parser reads them all: the session it belongs to, the
 * stage, who and what was judged, the verdict with its reply, the check that decided, why, and the
 * trace of every link. The logger adds the time. In a global dry run (`mode: "warn"`) `action` is
 * what was answered (`next`) and `would` what would have been.
 */
export function decisionRecord(session: Session, d: Decision, id?: string | number): Record<string, unknown> {
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
    trace: d.trace,
  };
}
