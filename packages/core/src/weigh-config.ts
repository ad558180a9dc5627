/**
 * `weigh` as a config file names it: one link that sums the scores the links before it left
 * (checks with `"action": "score"`, or the `greylist` doubts, which carry scores too) against a
 * reject and a defer threshold, as postscreen's `postscreen_dnsbl_threshold` and policyd-weight do:
 *
 * ```json
 * {"checks": [{"name": "dnsbl", "action": "score"}, {"name": "rdns-dynamic", "action": "score"},
 *             {"name": "weigh", "reject": 5, "defer": 2}]}
 * ```
 *
 * `"stage": "data"` places a second weigh at DATA: it sums the points of the accepted RCPT (which
 * adapters pass in) and those of DATA-time signals such as `received`. A weigh with a stage is
 * named `weigh-<stage>` in traces (`weigh-data`), so both can be in one chain.
 */
import type { Check, Stage } from './model.js';
import { STAGES } from './model.js';
import { withOptions, z } from './schema.js';
import type { Site } from './site.js';
import { weigh } from './weigh.js';

const KNOWN = new Set(['reject', 'defer', 'stage']);

/**
 * Builds the `weigh` link from config options: `reject` (required, a number) and `defer` (a number
 * below `reject`; no defer threshold when absent). Throws a TypeError naming the bad option.
 */
export function weighFromConfig(options: Record<string, unknown>, _site?: Site): Check {
  for (const k of Object.keys(options)) {
    if (!KNOWN.has(k)) throw new TypeError(`weigh: unknown option "${k}" (reject, defer, stage)`);
  }
  const { reject, defer } = options;
  if (typeof reject !== 'number' || !Number.isFinite(reject)) {
    throw new TypeError(
      `weigh: "reject" must be a number (the total that rejects); got ${JSON.stringify(reject)}`,
    );
  }
  if (defer !== undefined && (typeof defer !== 'number' || !Number.isFinite(defer))) {
    throw new TypeError(`weigh: "defer" must be a number; got ${JSON.stringify(defer)}`);
  }
  const { stage } = options;
  if (stage !== undefined && !STAGES.includes(stage as Stage)) {
    throw new TypeError(`weigh: "stage" must be one of ${STAGES.join(', ')}; got ${JSON.stringify(stage)}`);
  }
  return weigh({
    checks: [],
    reject,
    ...(defer !== undefined ? { defer } : {}),
    ...(stage !== undefined ? { stage: stage as Stage, name: `weigh-${stage as Stage}` } : {}),
  });
}

/** The options of the `weigh` link. */
export const weighOptions = z.strictObject({
  reject: z.number().describe('The total of points that rejects'),
  defer: z.number().optional().describe('The total that defers (below reject); none when absent'),
  stage: z
    .enum(STAGES as [Stage, ...Stage[]])
    .optional()
    .describe('Weigh at this stage (data: add the DATA signals)'),
});

/** `weigh` for a registry, with its options. */
export const weighFactory = withOptions(weighOptions, (o: Record<string, unknown>, s: Site) =>
  weighFromConfig(o, s),
);
