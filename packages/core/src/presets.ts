import { coreFactories } from './checks/index.js';
import type { CheckSpec, Policy, PolicyConfig, Registry } from './config.js';
import { bindFactories, buildPolicy } from './config.js';
import { ConfigError, type ConfigIssue, suggestion } from './config-error.js';
import type { Check, Clock, Logger } from './model.js';
import { pipeliningFactory } from './pipelining.js';
import { rdnsFactories } from './rdns/index.js';
import { withOptions, z } from './schema.js';
import { weighFactory } from './weigh-config.js';

/**
 * The recommended order, after the "Enhanced Spam Defence" article and Postfix practice: what we
 * can prove false locally first, DNS next, the greylist for what is only doubtful, callouts last.
 *
 * - `reputation` first: a known reoffender costs nothing more.
 * - `trusted` (forwarders, backup MX) and `relay` (our networks and users) accept before any
 *   content check, so we never refuse what our own side or a forwarder relays.
 * - HELO claims to be us, HELO syntax, sender syntax and FQDN, sender domain exists, our domains
 *   forged from outside, recipient checks, pipelining: all cheap and all proving something false.
 * - `helo-fqdn` and `helo-bare-ip` (a single-label or bare-IP HELO) prove a misconfiguration, not
 *   abuse: small honest servers and appliances send them. Doubts here (`greylist`), as
 *   `helo-literal-mismatch` (RFC 5321 4.1.4) always was; `action: reject` is Postfix's answer.
 * - DNS lists: `dnswl` can accept, `dnsbl`/`rhsbl` reject well-run listings or score.
 * - `fcrdns`, `rdns-missing`, `rdns-dynamic` only add doubts here (action `greylist`), and the
 *   selective `greylist` delays just those doubtful clients, never everyone.
 * The review of every link (what it refuses, what it only doubts, and why) is in
 * docs/checks/README.md.
 * - `callout` last, and only for the domains the site lists (off until some are).
 */
export const RECOMMENDED: readonly CheckSpec[] = [
  { name: 'reputation' },
  { name: 'trusted' },
  { name: 'relay' },
  { name: 'helo-required' },
  { name: 'helo-claims-us' },
  { name: 'helo-syntax' },
  { name: 'helo-fqdn', action: 'greylist' },
  { name: 'helo-bare-ip', action: 'greylist' },
  { name: 'helo-literal-mismatch', action: 'greylist' },
  { name: 'sender-syntax' },
  { name: 'sender-fqdn' },
  { name: 'sender-domain' },
  { name: 'sender-forged-ours' },
  { name: 'recipient-syntax' },
  { name: 'recipient-fqdn' },
  { name: 'recipient-domain' },
  { name: 'address-guessing' },
  { name: 'pipelining' },
  { name: 'dnswl' },
  { name: 'dnsbl' },
  { name: 'rhsbl' },
  { name: 'fcrdns' },
  { name: 'rdns-missing', action: 'greylist' },
  { name: 'rdns-dynamic', action: 'greylist' },
  { name: 'callout' },
  { name: 'greylist', mode: 'selective' },
];

/** Every name the recommended list may name; a registry may lack any of them (offline, no store). */
export const RECOMMENDED_NAMES: ReadonlySet<string> = new Set(RECOMMENDED.map((c) => c.name));

/** The pure checks of core, by name (no environment needed), and `weigh` (see weigh-config.ts). */
export const pureRegistry: Registry = {
  ...bindFactories(coreFactories, undefined),
  ...bindFactories(rdnsFactories, undefined),
  ...bindFactories({ pipelining: pipeliningFactory }, undefined),
  // Not in the preset: a config that scores rather than refuses puts it after its scoring checks.
  weigh: weighFactory,
};

/**
 * The checks of the recommended list that need a provider (DNS, a store, a callout): what a caller
 * that runs the pure checks alone (a benchmark, an offline test) names in `omit`.
 */
export const PROVIDED_CHECKS: readonly string[] = RECOMMENDED.map((c) => c.name).filter(
  (n) => !Object.hasOwn(pureRegistry, n),
);

export interface RecommendedOptions extends PolicyConfig {
  /**
   * Checks that need I/O, made by their packages (`@mxguard/dns`, `@mxguard/greylist`, ...), by
   * name or as a registry. The preset puts each in its place.
   */
  readonly provided?: Readonly<Record<string, Check>> | Registry;
  /**
   * Checks of the recommended list to leave out, by name, or name -> why. A check of the list that
   * is neither provided nor omitted is an error, so nothing is left out silently; what is omitted
   * is listed, with the reason, in the policy's `off`.
   */
  readonly omit?: readonly string[] | Readonly<Record<string, string>>;
  /** The chain's clock. @default systemClock */
  readonly clock?: Clock;
  /** The chain's logger. */
  readonly log?: Logger;
}

/**
 * The preset a new user starts from: the recommended checks in the recommended order, for the
 * site the options describe. Each check of the list that needs I/O (DNS, a store) must be in
 * `provided` or named in `omit`. Without a greylist, the rDNS doubts fall back to their own
 * default action (defer), so a doubt is never silently dropped.
 */
export function recommended(options: RecommendedOptions = {}): Policy {
  const { provided = {}, clock, log, omit = [], ...config } = options;
  const registry: Record<string, Registry[string]> = { ...pureRegistry };
  for (const [name, v] of Object.entries(provided)) {
    // A check made in code takes no options from the config: options for it are refused.
    registry[name] = typeof v === 'function' ? v : withOptions(z.strictObject({}), () => v);
  }
  const off: Record<string, string> = Array.isArray(omit)
    ? Object.fromEntries((omit as readonly string[]).map((n) => [n, 'omitted']))
    : { ...(omit as Readonly<Record<string, string>>) };
  const issues: ConfigIssue[] = [];
  for (const n of Object.keys(off)) {
    if (!RECOMMENDED_NAMES.has(n)) {
      issues.push({
        path: `omit.${n}`,
        message: `not a check of the recommended list${suggestion(n, [...RECOMMENDED_NAMES])}`,
      });
    } else if (n in provided) {
      issues.push({ path: `omit.${n}`, message: `"${n}" is both provided and omitted` });
    }
  }
  if (config.checks === undefined) {
    const missing = RECOMMENDED.map((c) => c.name).filter((n) => !(n in registry) && !(n in off));
    if (missing.length > 0) {
      issues.push({
        path: 'provided',
        message: `no provider for ${missing.map((n) => `"${n}"`).join(', ')} of the recommended list: pass them in "provided" (a registry from their packages) or name them in "omit"`,
      });
    }
  }
  if (issues.length > 0) throw ConfigError.of(issues);
  const hasGreylist = 'greylist' in registry && !('greylist' in off);
  const defaults = RECOMMENDED.map((spec) =>
    !hasGreylist && spec.action === 'greylist' ? { name: spec.name } : spec,
  );
  return buildPolicy(config, registry, {
    defaults,
    off,
    ...(clock ? { clock } : {}),
    ...(log ? { log } : {}),
  });
}
