import type { Check } from './model.js';
import { HIT_ACTIONS, type HitAction, hit, next, reply } from './reply.js';
import { checkOptions, withOptions } from './schema.js';
import type { CheckFactory } from './site.js';

/**
 * `pipelining`: the client talked before our greeting (an early talker, what postscreen calls
 * "pregreet") or sent several commands in one go without being offered PIPELINING (RFC 2920
 * section 3.1). Both are what spam engines do and what real MTAs never do. The adapter sets
 * `session.flags.earlyTalker` / `session.flags.unauthorizedPipelining`.
 * As Postfix's `reject_unauth_pipelining`: 554 5.5.0 "Error: improper use of SMTP command
 * pipelining". Default action `reject`.
 */
export function pipeliningCheck(options: { action?: HitAction; score?: number } = {}): Check {
  const action = options.action ?? 'reject';
  const name = 'pipelining';
  return {
    name,
    stage: 'connect',
    run(session) {
      const flags = session.flags ?? {};
      if (flags.earlyTalker) {
        return hit(
          name,
          action,
          reply(554, '5.5.0', 'Error: SMTP protocol violation: talked before the greeting'),
          'client sent data before the greeting banner',
          'early-talker',
          options.score ?? 5,
        );
      }
      if (flags.unauthorizedPipelining) {
        return hit(
          name,
          action,
          reply(554, '5.5.0', 'Error: improper use of SMTP command pipelining'),
          'client pipelined commands without being offered PIPELINING',
          'unauth-pipelining',
          options.score ?? 5,
        );
      }
      return next();
    },
  };
}

/** Reads a check's `action` option from config, with a clear error for a bad value. */
export function actionOption(
  options: Record<string, unknown>,
  check: string,
  fallback: HitAction,
): HitAction {
  const a = options.action;
  if (a === undefined) return fallback;
  if (typeof a === 'string' && (HIT_ACTIONS as readonly string[]).includes(a)) return a as HitAction;
  throw new TypeError(
    `${check}: action must be one of ${HIT_ACTIONS.join(', ')}, warn; got ${JSON.stringify(a)}`,
  );
}

/** The factory of the `pipelining` check, as a config names it (`checks: ["pipelining"]`). */
export const pipeliningFactory: CheckFactory = withOptions(
  checkOptions({}),
  (options: Record<string, unknown>) => {
    const score = options.score;
    if (score !== undefined && typeof score !== 'number')
      throw new TypeError('pipelining: score must be a number');
    return pipeliningCheck({ action: actionOption(options, 'pipelining', 'reject'), score });
  },
);
