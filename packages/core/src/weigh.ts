import type { Check, FinalVerdict, Finding, NextVerdict, Reply, Stage } from './model.js';
import { stageIndex } from './model.js';
import { defer, next, reject, reply } from './reply.js';

/** Options of {@link weigh}. */
export interface WeighOptions {
  /** Name in traces and config. @default 'weigh' */
  readonly name?: string;
  /** Checks whose findings carry scores. They run in parallel; their final verdicts count as findings only. */
  readonly checks: readonly Check[];
  /** A total at or above this rejects. postscreen's `postscreen_dnsbl_threshold` plays the same role. */
  readonly reject: number;
  /** A total at or above this (and below `reject`) defers. @default no defer threshold */
  readonly defer?: number;
  /**
   * Also count the scored findings of the links before this one in the chain.
   * @default true
   */
  readonly includeEarlier?: boolean;
  /**
   * The stage the link runs at, when later than its checks' (e.g. `data`, to add the points of
   * DATA-time signals such as `received` to those of the accepted RCPT, which adapters pass in as
   * earlier findings). @default the latest stage of `checks`, `connect` when there are none
   */
  readonly stage?: Stage;
  /** @default 554 5.7.1 Service unavailable; client scored too high */
  readonly rejectReply?: Reply;
  /** @default 450 4.7.1 Service temporarily unavailable; client scored too high */
  readonly deferReply?: Reply;
}

/**
 * Several checks scored together against thresholds, as postscreen and policyd-weight do, usable as
 * one link of a chain. A member that rejects or defers on its own counts as its findings' scores,
 * never as a verdict: weigh decides.
 */
export function weigh(options: WeighOptions): Check {
  const name = options.name ?? 'weigh';
  if (!Number.isFinite(options.reject)) throw new TypeError('weigh: reject threshold must be a number');
  if (options.defer !== undefined && !(options.defer < options.reject)) {
    throw new TypeError('weigh: defer threshold must be below the reject threshold');
  }
  const own = options.checks.reduce<Stage>(
    (acc, c) => (stageIndex(c.stage) > stageIndex(acc) ? c.stage : acc),
    'connect',
  );
  if (options.stage !== undefined && !(stageIndex(options.stage) >= stageIndex(own))) {
    throw new TypeError(`weigh: stage "${String(options.stage)}" is before its checks' stage "${own}"`);
  }
  const stage = options.stage ?? own;
  const rejectReply =
    options.rejectReply ?? reply(554, '5.7.1', 'Service unavailable; client scored too high');
  const deferReply =
    options.deferReply ?? reply(450, '4.7.1', 'Service temporarily unavailable; client scored too high');
  const includeEarlier = options.includeEarlier ?? true;
  const weighs = {
    refusesAt: options.defer ?? options.reject,
    headerPoints: headerPoints(options.checks),
    earlier: includeEarlier,
  };
  if (weighs.headerPoints >= weighs.refusesAt)
    throw new TypeError(headerError(name, weighs.refusesAt, options.checks));
  return {
    name,
    stage,
    weighs,
    async run(session, ctx): Promise<NextVerdict | FinalVerdict> {
      if (stageIndex(session.stage) < stageIndex(stage)) return next('stage not reached');
      const results = await Promise.all(options.checks.map(async (c) => c.run(session, ctx)));
      const own: Finding[] = results.flatMap((r) => r.findings ?? []);
      const counted = includeEarlier ? [...ctx.findings, ...own] : own;
      const total = counted.reduce((s, f) => s + (f.score ?? 0), 0);
      const detail = counted
        .filter((f) => f.score)
        .map((f) => `${f.check}:${f.tag}=${f.score}`)
        .join(' ');
      const reason = `score ${total} (${detail || 'nothing found'}) against reject ${options.reject}${
        options.defer !== undefined ? ` / defer ${options.defer}` : ''
      }`;
      // Object.assign: a spread given keys of its own is slow in Node 20 (docs/DECISIONS.md).
      if (total >= options.reject) return Object.assign(reject(rejectReply, reason), { findings: own });
      if (options.defer !== undefined && total >= options.defer)
        return Object.assign(defer(deferReply, reason), { findings: own });
      return next(reason, own);
    },
  };
}

/** The points header-reading checks can add at most (an undeclared bound is unbounded). */
export function headerPoints(checks: readonly Check[]): number {
  let total = 0;
  for (const c of checks) if (c.readsHeaders) total += c.maxScore ?? Number.POSITIVE_INFINITY;
  return total;
}

/**
 * The error for a configuration in which header points alone can refuse: Received headers are
 * claims by strangers and never decide a refusal (DESIGN principle 3).
 */
export function headerError(weighName: string, refusesAt: number, readers: readonly Check[]): string {
  const parts = readers
    .filter((c) => c.readsHeaders)
    .map((c) => `${c.name} up to ${c.maxScore ?? 'unbounded'}`)
    .join(', ');
  return (
    `${weighName}: header points alone (${parts}) can reach its threshold ${refusesAt}; ` +
    'Received headers must never decide a refusal (DESIGN principle 3): lower their maxScore ' +
    `below ${refusesAt} or raise the threshold`
  );
}
