/**
 * `weigh` as a config file names it: one link that sums the scores the links before it left
 * (checks with `"action": "score"`, or the `greylist` doubts, which carry scores too) against a
 * reject and a defer threshold, as postscreen's `postscreen_dnsbl_threshold` and policyd-weight do:
 *
 * ```json
 * {"checks": [{"name": "dnsbl", "action": "score"}, {"name": "rdns-dynamic", "action": "score"},
 *             {"name": "weigh", "reject": 5, "defer": 2}]}
 * ```
 */
import type { Check } from './model.js';
import type { Site } from './site.js';
import { weigh } from './weigh.js';

const KNOWN = new Set(['reject', 'defer']);

/**
 * Builds the `weigh` link from config options: `reject` (required, a number) and `defer` (a number
 * below `reject`; no defer threshold when absent). Throws a TypeError naming the bad option.
 */
export function weighFromConfig(options: Record<string, unknown>, _site?: Site): Check {
  for (const k of Object.keys(options)) {
    if (!KNOWN.has(k)) throw new TypeError(`weigh: unknown option "${k}" (reject, defer)`);
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
  return weigh({ checks: [], reject, ...(defer !== undefined ? { defer } : {}) });
}
