import type { Chain, Help, Link } from './chain.js';
import { chain } from './chain.js';
import { ConfigError, type ConfigIssue } from './config-error.js';
import type { Clock, Logger } from './model.js';
import {
  type OptionsSchema,
  parseWith,
  policySchema,
  type RegistryEntry,
  withOptions,
  type z,
} from './schema.js';
import type { CheckFactory, Site, SiteInput } from './site.js';
import { site as makeSite } from './site.js';

/** A check as a config file names it: a name, or a name with options. */
export interface CheckSpec {
  /** The check's name, as its factory is registered. */
  readonly name: string;
  /** `warn` runs the check in warn mode; any other value is the check's hit action. */
  readonly action?: string;
  readonly [option: string]: unknown;
}

/**
 * The JSON config of a policy (see {@link policySchema}, its single source of validation). Every
 * field is optional. Package settings (`dns`, `greylist`, ...) are typed by the schema that adds
 * them (the CLI's `MxguardConfig`).
 */
export interface PolicyConfig extends SiteInput {
  /** The JSON Schema of the file, for editors. */
  readonly $schema?: string;
  /** The ordered list of checks. @default the recommended preset */
  readonly checks?: readonly (string | CheckSpec)[];
  /** @default true (Postfix smtpd_delay_reject) */
  readonly delayReject?: boolean;
  /** Shorthand for `help.url`. */
  readonly helpUrl?: string;
  /** Shorthand for `help.contact`. */
  readonly helpContact?: string;
  /**
   * Options by check name, for checks of the chain: merged into the preset's entries when `checks`
   * is not given, and into the `checks` entries of that name when it is (a key given in both places
   * is refused). Naming a check that is not in the chain is refused.
   */
  readonly options?: Readonly<Record<string, Readonly<Record<string, unknown>>>>;
  /** Names of checks of the chain to run in warn mode. */
  readonly warn?: readonly string[];
}

/** Factories bound to their environment: what `buildChain` can make, by check name. */
export type Registry = Readonly<Record<string, RegistryEntry>>;

/** Binds a package's factories to the environment they need (a resolver, a store), keeping their option schemas. */
export function bindFactories<E>(factories: Readonly<Record<string, CheckFactory<E>>>, env: E): Registry {
  return Object.fromEntries(
    Object.entries(factories).map(([name, f]) => {
      const bound = (o: Record<string, unknown>, s: Site) => f(o, s, env);
      return [name, f.options ? withOptions(f.options, bound) : bound];
    }),
  );
}

/** The option schemas of a registry's checks, by name, for {@link policySchema}. */
export function catalogOf(registry: Registry): Record<string, OptionsSchema | undefined> {
  return Object.fromEntries(Object.entries(registry).map(([n, f]) => [n, f.options]));
}

/** Reads the site part of a (validated) config. */
export function siteFromConfig(config: PolicyConfig): Site {
  const input: { -readonly [K in keyof SiteInput]: SiteInput[K] } = {};
  for (const key of ['ourDomains', 'ourHosts', 'ourAddresses', 'ourNetworks', 'trustedForwarders'] as const) {
    const v = config[key];
    if (v === undefined) continue;
    if (!Array.isArray(v) || !v.every((x) => typeof x === 'string')) {
      throw new ConfigError(key, 'must be a list of strings');
    }
    input[key] = v;
  }
  const help: { url?: string; contact?: string } = { ...(config.help ?? {}) };
  if (config.helpUrl !== undefined) help.url = config.helpUrl;
  if (config.helpContact !== undefined) help.contact = config.helpContact;
  input.help = help as Help;
  return makeSite(input);
}

/** What building a policy from a config needs besides the config and the factories. */
export interface BuildOptions {
  /** The chain's clock. @default systemClock */
  readonly clock?: Clock;
  /** The chain's logger. */
  readonly log?: Logger;
  /** The list used when the config has no `checks`. */
  readonly defaults?: readonly (string | CheckSpec)[];
  /**
   * Checks that are off, and why (name -> reason): left out of the default list and listed in
   * `off`; a config that names one in `checks`, `warn` or `options` is refused with the reason.
   */
  readonly off?: Readonly<Record<string, string>>;
  /** Top-level settings of packages that the caller reads (validated here with the rest). */
  readonly settings?: z.ZodRawShape;
}

/** One link of a built chain as the config made it: the check, its mode and its effective options. */
export interface PlannedLink {
  /** The check's name. */
  readonly name: string;
  /** Enforced, or only logged (`warn`). */
  readonly mode: 'enforce' | 'warn';
  /** The options the factory got (preset, `checks` entry and `options` merged). */
  readonly options: Readonly<Record<string, unknown>>;
}

/** A built policy: the chain, the site, the plan it was built from, and what is off and why. */
export interface Policy {
  /** The chain to evaluate sessions with. */
  readonly chain: Chain;
  /** Our domains, networks and help, as the config gave them. */
  readonly site: Site;
  /** Each link as configured, in order. */
  readonly links: readonly PlannedLink[];
  /** Checks of the default list that are off, with the reason. */
  readonly off: readonly {
    /** The check's name. */
    readonly name: string;
    /** Why it is off. */
    readonly why: string;
  }[];
  /** The names of `off`. */
  readonly skipped: readonly string[];
}

/** The names a default list may name, for the schema: the registry's and the off ones. */
function catalogFor(registry: Registry, options: BuildOptions): Record<string, OptionsSchema | undefined> {
  const catalog = catalogOf(registry);
  for (const c of [...(options.defaults ?? []), ...Object.keys(options.off ?? {})]) {
    const n = typeof c === 'string' ? c : c.name;
    if (!(n in catalog)) catalog[n] = undefined;
  }
  return catalog;
}

/**
 * Builds a chain from a config and a registry of factories. The config is validated against the
 * schema of that registry ({@link policySchema}); unknown keys, unknown checks, `warn` or
 * `options` naming a check not in the chain, bad options and bad site settings throw one
 * ConfigError listing every issue: a policy that does not say what the admin meant must not run.
 */
export function buildPolicy(config: PolicyConfig, registry: Registry, options: BuildOptions = {}): Policy {
  const catalog = catalogFor(registry, options);
  const schema = policySchema({
    checks: catalog,
    ...(options.settings ? { settings: options.settings } : {}),
  });
  parseWith(schema, config, Object.keys(catalog));
  const s = siteFromConfig(config);
  const off = options.off ?? {};
  const explicit = config.checks !== undefined;
  const specs = explicit
    ? (config.checks ?? []).map((c, i) => ({ spec: normaliseSpec(c, `checks[${i}]`), path: `checks[${i}]` }))
    : (options.defaults ?? [])
        .map((c) => ({ spec: normaliseSpec(c, 'checks'), path: 'checks' }))
        .filter(({ spec }) => !(spec.name in off));
  const inChain = new Set(specs.map(({ spec }) => spec.name));
  const issues: ConfigIssue[] = [];
  const notInChain = (n: string) =>
    off[n] !== undefined
      ? `"${n}" is off (${off[n]}), so it is not in the chain`
      : explicit
        ? `"${n}" is not in "checks"; add it there or remove it here`
        : `"${n}" is not in the recommended chain; to add it, list the chain in "checks"`;
  (config.warn ?? []).forEach((w, i) => {
    if (!inChain.has(w)) issues.push({ path: `warn[${i}]`, message: notInChain(w) });
  });
  for (const n of Object.keys(config.options ?? {})) {
    if (!inChain.has(n)) issues.push({ path: `options.${n}`, message: notInChain(n) });
  }
  const warn = new Set(config.warn ?? []);
  const links: Link[] = [];
  const planned: PlannedLink[] = [];
  for (const { spec, path } of specs) {
    const factory = registry[spec.name];
    if (!factory) {
      issues.push({
        path: explicit ? `${path}.name` : path,
        message:
          off[spec.name] !== undefined
            ? `"${spec.name}" is off (${off[spec.name]})`
            : `no provider for check "${spec.name}"`,
      });
      continue;
    }
    const user = config.options?.[spec.name] ?? {};
    if (explicit) {
      for (const k of Object.keys(user)) {
        if (k in spec) {
          issues.push({
            path: `options.${spec.name}.${k}`,
            message: `also given in ${path}; give it in one place`,
          });
        }
      }
    }
    // The user's options for a default-list check win over the preset's.
    const { name, action, ...rest } = { ...spec, ...user, name: spec.name } as CheckSpec;
    const merged: Record<string, unknown> = { ...rest };
    const mode = action === 'warn' || warn.has(name) ? 'warn' : 'enforce';
    if (action !== undefined && action !== 'warn') merged.action = action;
    try {
      links.push({ check: factory(merged, s), mode });
      planned.push({ name, mode, options: merged });
    } catch (err) {
      issues.push({ path, message: err instanceof Error ? err.message : String(err) });
    }
  }
  if (issues.length > 0) throw ConfigError.of(issues);
  const chainOptions: Parameters<typeof chain>[1] = {
    delayReject: config.delayReject ?? true,
    help: s.help,
    ...(options.clock ? { clock: options.clock } : {}),
    ...(options.log ? { log: options.log } : {}),
  };
  const offList = Object.entries(off).map(([name, why]) => ({ name, why }));
  try {
    return {
      chain: chain(links, chainOptions),
      site: s,
      links: planned,
      off: offList,
      skipped: offList.map((o) => o.name),
    };
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
