import type { Help } from './chain.js';
import type { Check } from './model.js';
import type { HitAction } from './reply.js';
import type { OptionsSchema } from './schema.js';

/**
 * What a site says about itself. Every check that needs to know "us" reads it from here, so a
 * config file names our domains once.
 */
export interface Site {
  /** Domains we receive mail for (Postfix `mydestination` + `relay_domains`), lower case. */
  readonly ourDomains: readonly string[];
  /** Our own host names (`myhostname` and the names of our other MX hosts). */
  readonly ourHosts: readonly string[];
  /** Our own IP addresses (what a client claiming to be us would put in a HELO literal). */
  readonly ourAddresses: readonly string[];
  /** Networks we relay for (Postfix `mynetworks`), addresses or CIDRs. Empty: none, loopback included. */
  readonly ourNetworks: readonly string[];
  /**
   * Clients that forward mail to us (backup MX, mailing lists we subscribe to, forwarding
   * services): addresses, CIDRs or forward-confirmed host names. Never checked, so we never refuse
   * what they relay and they never bounce it.
   */
  readonly trustedForwarders: readonly string[];
  /** Where a refused sender gets help. */
  readonly help: Help;
}

/** Site settings as a user writes them: every field optional. */
export type SiteInput = { readonly [K in keyof Site]?: Site[K] };

/** A site with our domain `example.com` and nothing else: the embedded default. */
export function site(input: SiteInput = {}): Site {
  const lower = (xs: readonly string[] | undefined) =>
    (xs ?? []).map((s) => s.trim().toLowerCase().replace(/\.$/, '')).filter((s) => s.length > 0);
  const domains = lower(input.ourDomains);
  return {
    ourDomains: domains.length > 0 || input.ourDomains ? domains : ['example.com'],
    ourHosts: lower(input.ourHosts),
    ourAddresses: (input.ourAddresses ?? []).map((s) => s.trim()),
    ourNetworks: (input.ourNetworks ?? []).map((s) => s.trim()),
    trustedForwarders: (input.trustedForwarders ?? []).map((s) => s.trim().toLowerCase()),
    help: input.help ?? {},
  };
}

/** Options every configurable check accepts, beside its own. */
export interface CommonCheckOptions {
  /** What the check does when it finds something (see HitAction). Each check documents its default. */
  readonly action?: HitAction;
  /** Points for `weigh()` when `action` is `score` or `greylist`. */
  readonly score?: number;
}

/**
 * Makes a check from its options (as written in a config file) and the site. Packages export a
 * map of these, keyed by check name, so a config file can name any check of any package. `env`
 * carries what the package needs (a resolver, a store, a clock).
 */
export interface CheckFactory<Env = unknown> {
  (options: Record<string, unknown>, site: Site, env: Env): Check;
  /** The options it reads (see `withOptions`): the config schema collects them. */
  readonly options?: OptionsSchema;
}
