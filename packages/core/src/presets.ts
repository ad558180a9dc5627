import { coreFactories } from './checks/index.js';
import type { CheckSpec, Policy, PolicyConfig, Registry } from './config.js';
import { buildPolicy } from './config.js';
import type { Check, Clock, Logger } from './model.js';
import { pipeliningFactory } from './pipelining.js';
import { rdnsFactories } from './rdns/index.js';
import { weighFromConfig } from './weigh-config.js';

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
  ...Object.fromEntries(Object.entries(coreFactories).map(([n, f]) => [n, (o, s) => f(o, s, undefined)])),
  ...Object.fromEntries(Object.entries(rdnsFactories).map(([n, f]) => [n, (o, s) => f(o, s, undefined)])),
  pipelining: (o, s) => pipeliningFactory(o, s, undefined),
  // Not in the preset: a config that scores rather than refuses puts it after its scoring checks.
  weigh: (o, s) => weighFromConfig(o, s),
} as Registry;

export interface RecommendedOptions extends PolicyConfig {
  /**
   * Checks that need I/O, made by their packages (`@mxguard/dns`, `@mxguard/greylist`, ...), by
   * name or as a registry. The preset puts each in its place; names not provided are left out and
   * listed in `skipped`.
   */
  readonly provided?: Readonly<Record<string, Check>> | Registry;
  readonly clock?: Clock;
  readonly log?: Logger;
}

/**
 * The preset a new user starts from: the recommended checks in the recommended order, for the
 * site the options describe. Without a greylist, the rDNS doubts fall back to their own default
 * action (defer), so a doubt is never silently dropped.
 */
export function recommended(options: RecommendedOptions = {}): Policy {
  const { provided = {}, clock, log, ...config } = options;
  const registry: Record<string, Registry[string]> = { ...pureRegistry };
  for (const [name, v] of Object.entries(provided)) {
    registry[name] = typeof v === 'function' ? v : () => v;
  }
  const hasGreylist = 'greylist' in registry;
  const defaults = RECOMMENDED.map((spec) =>
    !hasGreylist && spec.action === 'greylist' ? { name: spec.name } : spec,
  );
  return buildPolicy(config, registry, {
    defaults,
    optional: RECOMMENDED_NAMES,
    ...(clock ? { clock } : {}),
    ...(log ? { log } : {}),
  });
}
