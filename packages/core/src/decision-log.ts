import type { Decision } from './chain.js';
import type { Session } from './model.js';

/**
 * The fields of one `decision` log line, the same in every adapter (smtp-server, Haraka), so one
 * parser reads them all: the stage, who and what was judged, the verdict with its codes, the check
 * that decided, why, and the trace of every link.
 */
export function decisionRecord(session: Session, d: Decision): Record<string, unknown> {
  return {
    event: 'decision',
    stage: session.stage,
    client: session.clientAddress,
    helo: session.helo,
    from: session.mailFrom,
    to: session.rcptTo,
    action: d.action,
    code: d.reply?.code,
    enhanced: d.reply?.enhanced,
    check: d.check,
    reason: d.reason,
    trace: d.trace,
  };
}
