import type { FinalVerdict, Finding, NextVerdict, Reply } from './model.js';

const ENHANCED = /^([245])\.(\d{1,3})\.(\d{1,3})$/;

/**
 * Builds a reply and checks that the basic and enhanced codes agree (RFC 3463:
 * the class digit of both is the same, so a 5xx never carries a 4.x.x).
 * Throws TypeError on a mismatch: that is a programming or config error.
 */
export function reply(code: number, enhanced: string, text: string): Reply {
  if (!Number.isInteger(code) || code < 200 || code > 599) {
    throw new TypeError(`reply code ${code} is not an SMTP reply code`);
  }
  // Checked without a match array or a regex for the text: checks build replies as they judge.
  if (!ENHANCED.test(enhanced))
    throw new TypeError(`enhanced status code "${enhanced}" is not of the form class.subject.detail`);
  if (enhanced.charCodeAt(0) - 48 !== Math.floor(code / 100)) {
    throw new TypeError(`reply ${code} cannot carry enhanced status ${enhanced}: the classes differ`);
  }
  if (text.includes('\n') || text.includes('\r')) throw new TypeError('reply text must be one line');
  return { code, enhanced, text };
}

/** True when a reply is well formed: used by property tests and by adapters before they send. */
export function isValidReply(r: Reply): boolean {
  try {
    reply(r.code, r.enhanced, r.text);
    return true;
  } catch {
    return false;
  }
}

/**
 * The same reply, made temporary. The basic code becomes one RFC 5321 defines for a temporary
 * refusal: 452 for a 552 (storage), 450 for everything else (550, 554, 504, 501...), rather than
 * Postfix soft_bounce's first-digit swap, which makes codes such as 401 and 404 that no RFC defines.
 * The enhanced code keeps its subject and detail with class 4 (5.7.1 -> 4.7.1).
 */
export function soften(r: Reply): Reply {
  if (r.code < 500) return r;
  return { code: r.code === 552 ? 452 : 450, enhanced: `4${r.enhanced.slice(1)}`, text: r.text };
}

/** `next` with nothing to say: one frozen object, shared by every check that says only that. */
const NEXT: NextVerdict = Object.freeze({ action: 'next' });

/** No opinion. */
export function next(reason?: string, findings?: readonly Finding[]): NextVerdict {
  if (reason === undefined && (findings === undefined || findings.length === 0)) return NEXT;
  const v: { action: 'next'; reason?: string; findings?: readonly Finding[] } = { action: 'next' };
  if (reason !== undefined) v.reason = reason;
  if (findings !== undefined && findings.length > 0) v.findings = findings;
  return v;
}

/** A permanent refusal; the reply must be a 5xx. */
export function reject(r: Reply, reason: string): FinalVerdict {
  if (r.code < 500) throw new TypeError(`reject needs a 5xx reply, got ${r.code}`);
  return { action: 'reject', reply: r, reason };
}

/** A temporary refusal; the reply must be a 4xx. */
export function defer(r: Reply, reason: string, ifPermit = false): FinalVerdict {
  if (r.code < 400 || r.code >= 500) throw new TypeError(`defer needs a 4xx reply, got ${r.code}`);
  return ifPermit
    ? { action: 'defer', reply: r, reason, ifPermit: true }
    : { action: 'defer', reply: r, reason };
}

/** Accept (Postfix OK): stop evaluating, allow. */
export function accept(reason: string): FinalVerdict {
  return { action: 'accept', reply: { code: 250, enhanced: '2.0.0', text: 'Ok' }, reason };
}

/**
 * What a check does when it finds something. Each check has a default; users override it per check.
 * - `reject`: its 5xx reply. - `defer`: the 4xx form of it. - `defer_if_permit`: 4xx unless something
 *   later rejects. - `greylist`: no verdict, a doubt for the selective greylist. - `score`: no verdict,
 *   points for `weigh()`.
 */
export type HitAction = 'reject' | 'defer' | 'defer_if_permit' | 'greylist' | 'score';

/** Every hit action, as a config may name it in a check's `action` option. */
export const HIT_ACTIONS: readonly HitAction[] = ['reject', 'defer', 'defer_if_permit', 'greylist', 'score'];

/**
 * Turns a check's finding into the verdict its configured action asks for. `r` is the reply the check
 * would give when rejecting (a 5xx); `defer` and `defer_if_permit` send its temporary form by
 * {@link soften} (`550 5.7.1` goes out as `450 4.7.1`), so one reply serves every action a user may
 * configure. A check whose own reply is a 4xx (a temporary doubt) is never hardened to 5xx by
 * `reject`: temporary stays temporary. To answer with a fixed code of your own, use {@link reject}
 * or {@link defer}, which refuse a reply of the other class.
 */
export function hit(
  check: string,
  action: HitAction,
  r: Reply,
  reason: string,
  tag: string,
  score = 1,
): NextVerdict | FinalVerdict {
  switch (action) {
    case 'reject':
      return r.code >= 500 ? reject(r, reason) : defer(r, reason);
    case 'defer':
      return defer(soften(r), reason);
    case 'defer_if_permit':
      return defer(soften(r), reason, true);
    case 'greylist':
      return next(reason, [{ check, tag, doubt: true, score }]);
    case 'score':
      return next(reason, [{ check, tag, score }]);
  }
}
