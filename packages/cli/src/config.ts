/**
 * The whole configuration of the CLI, the smtp-server gateway and the Haraka plugin, in one schema:
 * the site, the chain (`checks`, `options`, `warn`), every check's options as each package declares
 * them beside its factory, and the package settings (DNS, stores). It is the single source of the
 * validation, of the `MxguardConfig` type and of the published JSON Schema
 * (schema/mxguard.schema.json, `mxguard config schema`).
 */
import { calloutFactories, calloutStoreSchema } from '@mxguard/callout';
import {
  type CheckFactory,
  catalogOf,
  type OptionsSchema,
  parseWith,
  policyJsonSchema,
  policySchema,
  pureRegistry,
  RECOMMENDED,
  type z,
} from '@mxguard/core';
import { dnsFactories, dnsSettingsShape } from '@mxguard/dns';
import { greylistFactories, greylistStoreSchema } from '@mxguard/greylist';
import { policySettingsShape } from '@mxguard/postfix';
import { reputationFactories, reputationStoreSchema } from '@mxguard/reputation';
import { signalsFactories } from '@mxguard/signals';
import { gatewaySettingsShape } from '@mxguard/smtp';

function optionsOf(
  factories: Readonly<Record<string, CheckFactory<never>>>,
): Record<string, OptionsSchema | undefined> {
  return Object.fromEntries(Object.entries(factories).map(([n, f]) => [n, f.options]));
}

/** Every check a config file may name, with the options it declares. */
export const CHECK_CATALOG: Readonly<Record<string, OptionsSchema | undefined>> = {
  ...catalogOf(pureRegistry),
  ...optionsOf(dnsFactories),
  ...optionsOf(greylistFactories),
  ...optionsOf(calloutFactories),
  ...optionsOf(reputationFactories),
  ...optionsOf(signalsFactories),
};

/**
 * The top-level settings of the packages: resolver and DNS lists, where each store lives, and the
 * limits of `mxguard serve` (`gateway`) and `mxguard policy` (`policy`).
 */
export const SETTINGS_SHAPE = {
  ...dnsSettingsShape,
  ...gatewaySettingsShape,
  ...policySettingsShape,
  greylist: greylistStoreSchema.optional(),
  reputationStore: reputationStoreSchema
    .optional()
    .describe('Where reputation records live: "memory" (default) or a redis:// URL'),
  calloutStore: calloutStoreSchema
    .optional()
    .describe('Where callout results live: "memory" (default) or a redis:// URL'),
};

const parts = {
  checks: CHECK_CATALOG,
  defaults: RECOMMENDED.map((c) => c.name),
  settings: SETTINGS_SHAPE,
};

/** The schema of a config file. */
export const configSchema = policySchema(parts);

/** A config file, as its author writes it (every key optional). */
export type MxguardConfig = z.input<typeof configSchema>;

/** The config without the package settings: what the chain is built from. */
export function policyPart(config: MxguardConfig): MxguardConfig {
  return Object.fromEntries(Object.entries(config).filter(([k]) => !(k in SETTINGS_SHAPE))) as MxguardConfig;
}

/**
 * Validates a config against the schema: an unknown key at any depth, an unknown check or a bad
 * option throws one ConfigError naming each place (and the nearest known name). The rules between
 * keys (`warn` and `options` naming checks of the chain) are checked when the chain is built.
 */
export function validateConfig(value: unknown): MxguardConfig {
  parseWith(configSchema, value, Object.keys(CHECK_CATALOG));
  return value as MxguardConfig;
}

/** Where the JSON Schema is published (the `$id` of the file). */
export const SCHEMA_ID = 'https://mxguard.dev/schema/mxguard.schema.json';

/** The JSON Schema (draft 2020-12) of a config file, as committed in schema/mxguard.schema.json. */
export function configJsonSchema(): Record<string, unknown> {
  return policyJsonSchema(parts, { id: SCHEMA_ID, title: 'mxguard configuration' });
}
