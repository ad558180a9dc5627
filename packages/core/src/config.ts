import type { Chain, Help, Link } from './chain.js';
import { chain } from './chain.js';
import type { Check, Clock, Logger } from './model.js';
import type { CheckFactory, Site, SiteInput } from './site.js';
import { site as makeSite } from './site.js';

/** A check as a config file names it: a name, or a name with options. */
export interface CheckSpec {
  readonly name: string;
  /** `warn` runs the check in warn mode; any other value is the check's hit action. */
  readonly action?: string;
  readonly [option: string]: unknown;
}

/** The JSON config of a policy. Every field is optional. */
export interface PolicyConfig extends SiteInput {
  /** The ordered list of checks. @default the recommended preset */
  readonly checks?: readonly (string | CheckSpec)[];
  /** @default true (Postfix smtpd_delay_reject) */
  readonly delayReject?: boolean;
  /** Shorthand for `help.url`. */
  readonly helpUrl?: string;
  /** Shorthand for `help.contact`. */
  readonly helpContact?: string;
  /** Options for checks of the default list, by name, when `checks` is not given. */
  readonly options?: Readonly<Record<string, Readonly<Record<string, unknown>>>>;
  /** Names of checks to run in warn mode. */
  readonly warn?: readonly string[];
  /** Package-specific settings (DNS lists, greylist store, ...), read by the code that builds the registry. */
  readonly [setting: string]: unknown;
}

/** Factories bound to their environment: what `buildChain` can make, by check name. */
export type Registry = Readonly<Record<string, (options: Record<string, unknown>, site: Site) => Check>>;

/** A config error names where in the config it is. */
export class ConfigError extends Error {
  constructor(
    readonly path: string,
    message: string,
  ) {
    super(`config ${path}: ${message}`);
    this.name = 'ConfigError';
  }
}

/** Binds a package's factories to the environment they need (a resolver, a store). */
export function bindFactories<E>(factories: Readonly<Record<string, CheckFactory<E>>>, env: E): Registry {
  return Object.fromEntries(
    Object.entries(factories).map(([name, f]) => [
      name,
      (o: Record<string, unknown>, s: Site) => f(o, s, env),
    ]),
  );
}

const SITE_LISTS = ['ourDomains', 'ourHosts', 'ourAddresses', 'ourNetworks', 'trustedForwarders'] as const;

/** Reads the site part of a config, with clear errors. */
export function siteFromConfig(config: PolicyConfig): Site {
  const input: { -readonly [K in keyof SiteInput]: SiteInput[K] } = {};
  for (const key of SITE_LISTS) {
    const v = config[key];
    if (v === undefined) continue;
    if (!Array.isArray(v) || !v.every((x) => typeof x === 'string')) {
      throw new ConfigError(key, 'must be a list of strings');
    }
    input[key] = v;
  }
  const help: { url?: string; contact?: string } = { ...(config.help ?? {}) };
  if (config.helpUrl !== undefined) {
    if (typeof config.helpUrl !== 'string') throw new ConfigError('helpUrl', 'must be a string');
    help.url = config.helpUrl;
  }
  if (config.helpContact !== undefined) {
    if (typeof config.helpContact !== 'string') throw new ConfigError('helpContact', 'must be a string');
    help.contact = config.helpContact;
  }
  input.help = help as Help;
  return makeSite(input);
}

export interface BuildOptions {
  readonly clock?: Clock;
  readonly log?: Logger;
  /** The list used when the config has no `checks`. */
  readonly defaults?: readonly (string | CheckSpec)[];
  /**
   * Names that may be missing from the registry without an error (they are left out and listed in
   * `skipped`): the default list names checks of every package, and a registry built offline or
   * without a store lacks some.
   */
  readonly optional?: ReadonlySet<string>;
}

/** A built policy: the chain, the site, and what was left out and why. */
export interface Policy {
  readonly chain: Chain;
  readonly site: Site;
  readonly skipped: readonly string[];
}

/**
 * Builds a chain from a config and a registry of factories. Unknown check names, bad options and
 * bad site settings throw ConfigError: a policy that does not say what the admin meant must not run.
 */
export function buildPolicy(config: PolicyConfig, registry: Registry, options: BuildOptions = {}): Policy {
  if (config === null || typeof config !== 'object' || Array.isArray(config)) {
    throw new ConfigError('(root)', 'must be a JSON object');
  }
  const s = siteFromConfig(config);
  const explicit = config.checks !== undefined;
  if (explicit && !Array.isArray(config.checks)) throw new ConfigError('checks', 'must be a list');
  const specs = (config.checks ?? options.defaults ?? []).map((c, i) => normaliseSpec(c, `checks[${i}]`));
  const warn = new Set(config.warn ?? []);
  const links: Link[] = [];
  const skipped: string[] = [];
  specs.forEach((spec, i) => {
    const path = `checks[${i}]`;
    const factory = registry[spec.name];
    if (!factory) {
      if (!explicit || options.optional?.has(spec.name)) {
        skipped.push(spec.name);
        return;
      }
      throw new ConfigError(
        path,
        `unknown check "${spec.name}" (known: ${Object.keys(registry).sort().join(', ')})`,
      );
    }
    // The user's options for a default-list check win over the preset's.
    const user = explicit ? {} : (config.options?.[spec.name] ?? {});
    const { name, action, ...rest } = { ...spec, ...user, name: spec.name } as CheckSpec;
    const merged: Record<string, unknown> = { ...rest };
    const mode = action === 'warn' || warn.has(name) ? 'warn' : 'enforce';
    if (action !== undefined && action !== 'warn') merged.action = action;
    try {
      links.push({ check: factory(merged, s), mode });
    } catch (err) {
      throw new ConfigError(path, err instanceof Error ? err.message : String(err));
    }
  });
  const chainOptions: Parameters<typeof chain>[1] = {
    delayReject: config.delayReject ?? true,
    help: s.help,
    ...(options.clock ? { clock: options.clock } : {}),
    ...(options.log ? { log: options.log } : {}),
  };
  try {
    return { chain: chain(links, chainOptions), site: s, skipped };
  } catch (err) {
    throw new ConfigError('checks', err instanceof Error ? err.message : String(err));
  }
}

function normaliseSpec(c: unknown, path: string): CheckSpec {
  if (typeof c === 'string') return { name: c };
  if (c && typeof c === 'object' && !Array.isArray(c) && typeof (c as CheckSpec).name === 'string') {
    const spec = c as CheckSpec;
    if (spec.action !== undefined && typeof spec.action !== 'string') {
      throw new ConfigError(`${path}.action`, 'must be a string');
    }
    return spec;
  }
  throw new ConfigError(path, 'must be a check name or an object with a "name"');
}
