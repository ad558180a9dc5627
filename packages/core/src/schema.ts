/**
 * The one schema of a policy config (zod 4): what `buildPolicy`, `recommended()` and the CLI
 * validate, what the TypeScript types of the settings come from, and what `mxguard config schema`
 * publishes as JSON Schema (schema/mxguard.schema.json). Each check declares its options beside its
 * factory ({@link withOptions}); the config layer collects them from the registry, so a new check
 * brings its options in one place. Every object is strict: an unknown key at any depth is refused
 * with its path and the nearest known name (see docs/DECISIONS.md, "One config schema").
 */
import { z } from 'zod';
import { ConfigError, type ConfigIssue, configPath, suggestion } from './config-error.js';
import type { Check } from './model.js';
import type { HitAction } from './reply.js';
import { HIT_ACTIONS } from './reply.js';
import type { CheckFactory, Site } from './site.js';

export { z };

/** A check's options as a config writes them: a strict object. */
export type OptionsSchema = z.ZodObject;

/** What a check does when it finds something. */
export const hitActionSchema = z.enum(HIT_ACTIONS as [HitAction, ...HitAction[]]);

/** `action` and `score`, which every configurable check accepts beside its own options. */
export const commonOptionShape = {
  action: hitActionSchema.optional().describe('What the check does when it finds something'),
  score: z.number().optional().describe('Points for weigh() when action is score or greylist'),
};

/** A strict options object with `action` and `score` and the check's own keys. */
export function checkOptions<S extends z.ZodRawShape>(shape: S) {
  return z.strictObject({ ...commonOptionShape, ...shape });
}

/** Where a store lives: `"memory"` or a `redis://` / `rediss://` URL. */
export const storeLocation = z.union([
  z.literal('memory'),
  z.string().regex(/^rediss?:\/\//, 'must be "memory" or a redis:// URL'),
]);

/**
 * A store kept in memory or in Redis, as a config file says it: `"memory"`, a `redis://` URL, or an
 * object. The type of what {@link memoryOrRedisStore} accepts; each store states its own defaults.
 */
export type MemoryOrRedisStoreConfig =
  | 'memory'
  | string
  | {
      /** In this process's memory. */
      readonly type: 'memory';
      /** Most entries kept. */
      readonly max?: number;
      /** Most bytes the entries may hold. */
      readonly maxBytes?: number;
    }
  | {
      /** In Redis, shared by several MX hosts. */
      readonly type?: 'redis';
      /** `redis://` or `rediss://` URL of the server. */
      readonly url: string;
      /** Prefix of every key, to share a Redis database. */
      readonly prefix?: string;
    };

/**
 * A store kept in memory or in Redis, as a config writes it: `"memory"`, a redis:// URL, or an
 * object (`type: "memory"` with its bounds, or `type: "redis"` with its URL and key prefix).
 */
export const memoryOrRedisStore = z.union([
  storeLocation.describe('"memory" or a redis:// URL'),
  z.strictObject({
    type: z.literal('memory').describe("In this process's memory"),
    max: z.number().int().min(1).optional().describe('Most entries kept'),
    maxBytes: z
      .number()
      .int()
      .min(1)
      .optional()
      .describe('Most bytes kept (counted: 256 an entry + 2 a character)'),
  }),
  z.strictObject({
    type: z.literal('redis').optional().describe('In Redis, shared by several MX hosts'),
    url: z
      .string()
      .regex(/^rediss?:\/\//, 'must be a redis:// URL')
      .describe('redis:// or rediss:// URL of the server'),
    prefix: z.string().optional().describe('Prefix of every key, to share a Redis database'),
  }),
]);

/** A list of strings. */
export const stringList = z.array(z.string());

const UNIT_MS = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000, w: 604_800_000 } as const;
const DURATION = /^(\d+)(ms|s|m|h|d|w)?$/;

/** `1500ms`, `300s`, `5m`, `1h`: a duration as Postfix's main.cf writes one. */
function formatMs(ms: number): string {
  for (const unit of ['w', 'd', 'h', 'm', 's'] as const) {
    if (ms >= UNIT_MS[unit] && ms % UNIT_MS[unit] === 0) return `${ms / UNIT_MS[unit]}${unit}`;
  }
  return `${ms}ms`;
}

/**
 * Milliseconds of a duration as a config writes it: a whole number of seconds, or a string with a
 * unit as Postfix's time parameters take one (`300s`, `5m`, `1h`, `1d`, `1w`, and `ms`); a number
 * in a string without a unit is seconds, as in main.cf. Undefined when it is not one.
 */
export function durationMs(value: number | string): number | undefined {
  if (typeof value === 'number') return Number.isInteger(value) && value >= 0 ? value * 1000 : undefined;
  const m = DURATION.exec(value.trim());
  if (!m) return undefined;
  return Number(m[1]) * UNIT_MS[(m[2] ?? 's') as keyof typeof UNIT_MS];
}

/**
 * A duration setting between `minMs` and `maxMs` (see {@link durationMs}): a number is seconds, a
 * string may carry a unit. A value without a known unit, or out of range, is refused with what was
 * expected (`config.gateway.sessionLifetime: 10s is below the least, 1m`).
 */
export function durationSetting(minMs: number, maxMs: number) {
  const range = `from ${formatMs(minMs)} to ${formatMs(maxMs)}`;
  return z
    .union([
      z
        .number()
        .int()
        .min(Math.ceil(minMs / 1000), `${range} (a number is seconds)`)
        .max(Math.floor(maxMs / 1000), `${range} (a number is seconds)`),
      z
        .string()
        .regex(
          DURATION,
          `a duration: whole seconds, or a number with a unit ms, s, m, h, d or w (as 300s, 5m), ${range}`,
        ),
    ])
    .superRefine((v, ctx) => {
      const ms = durationMs(v);
      if (ms === undefined) return; // the union said why
      if (ms < minMs)
        ctx.addIssue({ code: 'custom', message: `${formatMs(ms)} is below the least, ${formatMs(minMs)}` });
      else if (ms > maxMs)
        ctx.addIssue({ code: 'custom', message: `${formatMs(ms)} is above the most, ${formatMs(maxMs)}` });
    });
}

/** A whole-number setting from `min` to `max` (a count, or bytes), refused with the range otherwise. */
export function countSetting(min: number, max: number) {
  const range = `a whole number from ${min} to ${max}`;
  return z.number(range).int(range).min(min, range).max(max, range);
}

/**
 * Throws a TypeError naming the first of `values` that is not a whole number >= 1
 * (`limits.maxConnections must be a positive integer, got 0`); `prefix` goes before its name.
 */
export function requirePositiveIntegers(values: Readonly<Record<string, number>>, prefix = ''): void {
  for (const [k, v] of Object.entries(values)) {
    if (!Number.isInteger(v) || v < 1)
      throw new TypeError(`${prefix}${k} must be a positive integer, got ${v}`);
  }
}

/** A factory that declares the options it reads. */
export type Declared<F> = F & {
  /** The schema of the options the factory reads. */
  readonly options: OptionsSchema;
};

/** Declares the options of a check's factory, beside it: the config layer reads them from here. */
export function withOptions<F extends object>(options: OptionsSchema, factory: F): Declared<F> {
  return Object.assign(factory, { options });
}

/** A check factory with the options it reads, declared beside it: `options` is checked before `make` runs. */
export function checkFactory<E = unknown>(
  options: OptionsSchema,
  make: (options: Record<string, unknown>, site: Site, env: E) => Check,
): CheckFactory<E> {
  return withOptions(options, make);
}

/** A factory bound to its environment, as `buildPolicy` calls it, with its declared options. */
export type RegistryEntry = ((options: Record<string, unknown>, site: Site) => Check) & {
  /** The schema of the options it reads, when the factory declares them. */
  readonly options?: OptionsSchema;
};

/** The site settings, with what each means: the keys every config has. */
export const siteShape = {
  $schema: z.string().optional().describe('The JSON Schema of this file, for editors'),
  ourDomains: stringList
    .optional()
    .describe('Domains we receive mail for (Postfix mydestination + relay_domains). Default: example.com'),
  ourHosts: stringList.optional().describe('Our own host names (myhostname and our other MX hosts)'),
  ourAddresses: stringList.optional().describe('Our own IP addresses'),
  ourNetworks: stringList
    .optional()
    .describe('Networks we relay for (Postfix mynetworks), addresses or CIDRs'),
  trustedForwarders: stringList
    .optional()
    .describe('Backup MX, lists and forwarders we never check: addresses, CIDRs or host names'),
  help: z
    .strictObject({
      url: z.string().optional().describe('A URL with the site policy or an unblock form'),
      contact: z.string().optional().describe('An address or phone number for people'),
    })
    .optional()
    .describe('Where a refused sender gets help (in every refusal)'),
  helpUrl: z.string().optional().describe('Shorthand for help.url'),
  helpContact: z.string().optional().describe('Shorthand for help.contact'),
  delayReject: z
    .boolean()
    .optional()
    .describe('Judge connect, HELO and MAIL at RCPT (Postfix smtpd_delay_reject). Default: true'),
  mode: z
    .enum(['enforce', 'warn'])
    .optional()
    .describe(
      'warn: a global dry run, every session judged and logged with what would have been done, nothing refused. Default: enforce',
    ),
};

/** What a policy schema is made of. */
export interface PolicySchemaParts<S extends z.ZodRawShape = z.ZodRawShape> {
  /** Every check a config may name, with its options (`undefined`: not declared, any object). */
  readonly checks: Readonly<Record<string, OptionsSchema | undefined>>;
  /** The chain when a config has no `checks` (the names `warn` and `options` may then name). */
  readonly defaults?: readonly string[];
  /** Top-level settings read by packages (`dns`, `greylist`, ...). */
  readonly settings?: S;
}

const anyOptions = z.record(z.string(), z.unknown());

function unwrapOptional(s: z.ZodType): z.ZodType {
  return s instanceof z.ZodOptional ? (s.unwrap() as z.ZodType) : s;
}

/** The schema of one `checks` entry written as an object: `{"name": "dnsbl", ...options}`. */
function specSchema(name: string, options: OptionsSchema | undefined): z.ZodObject {
  if (!options) return z.looseObject({ name: z.literal(name), action: z.string().optional() });
  const shape = options.shape as z.ZodRawShape;
  const own = shape.action as z.ZodType | undefined;
  const action = (own ? z.union([unwrapOptional(own), z.literal('warn')]) : z.literal('warn'))
    .optional()
    .describe('warn: run in warn mode; else the hit action');
  return z.strictObject({ ...shape, name: z.literal(name), action });
}

/**
 * The schema of a whole config: the site, `checks`, `options`, `warn`, `delayReject`, and the
 * package settings. `checks` entries and `options` are checked against each check's own schema.
 */
export function policySchema<S extends z.ZodRawShape = Record<never, never>>(parts: PolicySchemaParts<S>) {
  const names = Object.keys(parts.checks).sort();
  const nameSchema = z.enum(names as [string, ...string[]]).describe('A check name');
  const specs = names.map((n) => specSchema(n, parts.checks[n]));
  const entry =
    specs.length > 0
      ? z.union([nameSchema, z.discriminatedUnion('name', specs as [z.ZodObject, ...z.ZodObject[]])])
      : nameSchema;
  const options = z
    .strictObject(Object.fromEntries(names.map((n) => [n, (parts.checks[n] ?? anyOptions).optional()])))
    .optional()
    .describe('Options by check name, for the checks of the chain (merged into the checks entries)');
  // A check with required options (weigh's reject, received's lists) named alone needs them in `options`.
  const needy = names.filter((n) => parts.checks[n] && !parts.checks[n].safeParse({}).success);
  return z
    .strictObject({
      ...siteShape,
      checks: z
        .array(entry)
        .optional()
        .describe('The ordered chain: check names, or objects with a name and options. Default: recommended'),
      options,
      warn: z.array(nameSchema).optional().describe('Checks of the chain to run in warn mode (dry run)'),
      ...((parts.settings ?? {}) as S),
    })
    .superRefine((value, ctx) => {
      const config = value as { checks?: unknown[]; options?: Record<string, unknown> };
      (config.checks ?? []).forEach((c, i) => {
        if (typeof c === 'string' && needy.includes(c) && config.options?.[c] === undefined) {
          const required = requiredKeys(parts.checks[c]);
          ctx.addIssue({
            code: 'custom',
            path: ['checks', i],
            message: `"${c}" needs options (${required.join(', ')}): write {"name": "${c}", ...} or give options.${c}`,
          });
        }
      });
    });
}

/** The keys an options schema requires. */
function requiredKeys(s: OptionsSchema | undefined): string[] {
  return Object.entries((s?.shape ?? {}) as z.ZodRawShape)
    .filter(([, v]) => !(v instanceof z.ZodOptional))
    .map(([k]) => k);
}

/** The input type of a policy schema's configs. */
export type ConfigOf<S extends z.ZodType> = z.input<S>;

/** A JSON Schema `if`/`then` rule. */
function ifThen(cond: object, then: object): object {
  return { if: cond, then };
}

/** `{"const": name}` or an object whose name is `name`: one `checks` entry naming it. */
function entryNamed(name: string): object {
  return {
    anyOf: [{ const: name }, { type: 'object', required: ['name'], properties: { name: { const: name } } }],
  };
}

/** A JSON Schema document (draft 2020-12), as {@link policyJsonSchema} makes it. */
export interface PolicyJsonSchema {
  /** The draft it follows. */
  readonly $schema: unknown;
  /** Its URL, when given. */
  readonly $id?: string;
  /** Its title, when given. */
  readonly title?: string;
  /** The rules between keys. */
  readonly allOf: object[];
  /** The rest of the schema, as zod writes it. */
  readonly [key: string]: unknown;
}

/**
 * The JSON Schema (draft 2020-12) of a policy schema, with the rules between keys that the loader
 * checks too: `warn` and `options` name only checks of the chain (the listed `checks`, else the
 * defaults).
 */
export function policyJsonSchema(
  parts: PolicySchemaParts,
  meta: { id?: string; title?: string } = {},
): PolicyJsonSchema {
  const js = z.toJSONSchema(policySchema(parts), {
    io: 'input',
    unrepresentable: 'any',
    reused: 'ref',
  }) as Record<string, unknown>;
  const names = Object.keys(parts.checks).sort();
  const rules: object[] = [];
  if (parts.defaults) {
    const d = [...parts.defaults];
    rules.push(
      ifThen(
        { not: { required: ['checks'] } },
        { properties: { warn: { items: { enum: d } }, options: { propertyNames: { enum: d } } } },
      ),
    );
  }
  for (const n of names) {
    if (parts.checks[n] && !parts.checks[n].safeParse({}).success) {
      rules.push(
        ifThen(
          { required: ['checks'], properties: { checks: { contains: { const: n } } } },
          { required: ['options'], properties: { options: { required: [n] } } },
        ),
      );
    }
    const inChecks = { properties: { checks: { contains: entryNamed(n) } } };
    rules.push(
      ifThen({ required: ['checks', 'warn'], properties: { warn: { contains: { const: n } } } }, inChecks),
    );
    rules.push(
      ifThen({ required: ['checks', 'options'], properties: { options: { required: [n] } } }, inChecks),
    );
  }
  const { $schema, ...rest } = js;
  return {
    $schema,
    ...(meta.id ? { $id: meta.id } : {}),
    ...(meta.title ? { title: meta.title } : {}),
    ...rest,
    allOf: rules,
  };
}

// --- errors ---

type Def = {
  type: string;
  innerType?: z.ZodType;
  shape?: Record<string, z.ZodType>;
  element?: z.ZodType;
  valueType?: z.ZodType;
  options?: z.ZodType[];
  discriminator?: string;
  values?: unknown[];
  in?: z.ZodType;
};
const defOf = (s: z.ZodType): Def => (s as unknown as { _zod: { def: Def } })._zod.def;

/** The schema that applies to `data`, through optional, default, pipes and unions. */
function resolve(s: z.ZodType | undefined, data: unknown): z.ZodType | undefined {
  for (let i = 0; s && i < 16; i++) {
    const d = defOf(s);
    if (d.type === 'optional' || d.type === 'nullable' || d.type === 'default' || d.type === 'readonly') {
      s = d.innerType;
    } else if (d.type === 'pipe') {
      s = d.in;
    } else if (d.type === 'union') {
      const objects = (d.options ?? []).map((o) => resolve(o, data)).filter((o) => o !== undefined);
      const disc = d.discriminator;
      const pick =
        objects.find((o) => {
          const od = defOf(o);
          if (od.type !== 'object') return false;
          if (!disc) return true;
          const lit = od.shape?.[disc];
          const v = (data as Record<string, unknown> | undefined)?.[disc];
          return lit !== undefined && (defOf(lit).values ?? []).includes(v);
        }) ?? objects.find((o) => defOf(o).type === (Array.isArray(data) ? 'array' : typeof data));
      return pick;
    } else return s;
  }
  return s;
}

/** The schema at `path` inside `root`, following `data` through unions. */
function schemaAt(root: z.ZodType, path: readonly PropertyKey[], data: unknown): z.ZodType | undefined {
  let s: z.ZodType | undefined = root;
  let d = data;
  for (const seg of path) {
    s = resolve(s, d);
    if (!s) return undefined;
    const def = defOf(s);
    if (def.type === 'object') s = def.shape?.[String(seg)];
    else if (def.type === 'array') s = def.element;
    else if (def.type === 'record') s = def.valueType;
    else return undefined;
    d = d !== null && typeof d === 'object' ? (d as Record<PropertyKey, unknown>)[seg] : undefined;
  }
  return resolve(s, d);
}

function valueAt(data: unknown, path: readonly PropertyKey[]): unknown {
  let d = data;
  for (const seg of path) {
    if (d === null || typeof d !== 'object') return undefined;
    d = (d as Record<PropertyKey, unknown>)[seg];
  }
  return d;
}

const TYPE_WORDS: Record<string, string> = {
  array: 'a list',
  object: 'an object',
  string: 'a string',
  number: 'a number',
  int: 'an integer',
  boolean: 'true or false',
};

function shown(v: unknown): string {
  const s = JSON.stringify(v) ?? String(v);
  return s.length > 60 ? `${s.slice(0, 57)}...` : s;
}

type Issue = z.core.$ZodIssue & {
  errors?: Issue[][];
  note?: string;
  discriminator?: string;
  options?: unknown[];
  keys?: string[];
  values?: unknown[];
  expected?: string;
};

/**
 * True when an issue refuses the value's type at the value itself: a wrong type or literal, or a
 * nested union none of whose branches takes that type (`"memory"` or a URL, given a number).
 */
function failsAtType(e: Issue): boolean {
  if (e.path.length > 0) return false;
  if (e.code === 'invalid_type' || e.code === 'invalid_value') return true;
  return e.code === 'invalid_union' && !e.note && (e.errors ?? []).every((b) => b.some(failsAtType));
}

/** What a branch of a union expected, in words, through nested unions. */
function expectedWords(e: Issue): string[] {
  if (e.code === 'invalid_union') return (e.errors ?? []).flat().flatMap(expectedWords);
  if (e.code === 'invalid_value' && e.values) return e.values.map((x) => JSON.stringify(x));
  return [TYPE_WORDS[e.expected ?? ''] ?? e.expected ?? ''];
}

/** The config issues of one zod issue, with nearest names for unknown keys and checks. */
function issuesOf(
  root: z.ZodType,
  data: unknown,
  issue: Issue,
  prefix: readonly PropertyKey[],
  checkNames: ReadonlySet<string>,
): ConfigIssue[] {
  const path = [...prefix, ...issue.path];
  const at = configPath(path);
  const v = valueAt(data, path);
  switch (issue.code) {
    case 'unrecognized_keys': {
      const s = schemaAt(root, path, data);
      const known = s && defOf(s).type === 'object' ? Object.keys(defOf(s).shape ?? {}) : [];
      return (issue.keys ?? []).map((k) => ({
        path: configPath([...path, k]),
        message: `unknown ${known.length > 0 && known.every((n) => checkNames.has(n)) ? 'check' : 'key'}${suggestion(k, known)}`,
      }));
    }
    case 'invalid_union': {
      if (issue.note === 'No matching discriminator') {
        const disc = issue.discriminator ?? 'name';
        const known = (issue.options ?? []).map(String);
        // zod reports it at the discriminator's path; name the entry's key once.
        const entryPath = issue.path.at(-1) === disc ? path.slice(0, -1) : path;
        const dv = valueAt(data, [...entryPath, disc]);
        if (dv === undefined) return [{ path: configPath(entryPath), message: `needs a "${disc}"` }];
        return [
          {
            path: configPath([...entryPath, disc]),
            message:
              typeof dv === 'string'
                ? `unknown check "${dv}"${suggestion(dv, known)}`
                : `must be a check name; got ${shown(dv)}`,
          },
        ];
      }
      const branches = issue.errors ?? [];
      // The branch that got past the type of the value says what is wrong inside it.
      // First a branch whose every complaint is inside the value (an object of the right shape with
      // one bad key), before a nested union that failed at the value itself.
      const typed =
        branches.find((b) => b.length > 0 && b.every((e) => e.path.length > 0)) ??
        branches.find((b) => !b.some(failsAtType));
      const chosen =
        typed ??
        (typeof v === 'string'
          ? branches.find((b) => b.some((e) => e.code === 'invalid_value'))
          : branches.find((b) =>
              b.some((e) => e.path.length === 0 && e.code === 'invalid_union' && !failsAtType(e)),
            ));
      if (chosen) return chosen.flatMap((e) => issuesOf(root, data, e, path, checkNames));
      if (
        branches.some((b) =>
          b.some(
            (e) => e.code === 'invalid_value' && (e.values ?? []).every((n) => checkNames.has(String(n))),
          ),
        )
      ) {
        return [{ path: at, message: `must be a check name or an object with a "name"; got ${shown(v)}` }];
      }
      const expected = [...new Set(branches.flatMap((b) => b.flatMap(expectedWords)))].filter((x) => x);
      return [{ path: at, message: `must be ${expected.join(' or ') || 'something else'}; got ${shown(v)}` }];
    }
    case 'invalid_value': {
      // A schema's own message (`z.literal('warn', {error})`) says it best.
      if (!issue.message.startsWith('Invalid')) return [{ path: at, message: issue.message }];
      const values = (issue.values ?? []).map(String);
      if (typeof v === 'string' && values.length > 0 && values.every((n) => checkNames.has(n))) {
        return [{ path: at, message: `unknown check "${v}"${suggestion(v, values)}` }];
      }
      const list = values.length <= 12 ? values.map((x) => JSON.stringify(x)).join(', ') : '';
      const near = typeof v === 'string' ? suggestion(v, []) : '';
      return [
        {
          path: at,
          message: `must be ${values.length === 1 ? JSON.stringify(values[0]) : `one of ${list}`}; got ${shown(v)}${near}`,
        },
      ];
    }
    case 'invalid_type': {
      if (v === undefined) return [{ path: at, message: 'is required' }];
      const s = issue.expected === 'array' ? schemaAt(root, path, data) : undefined;
      const element = s && defOf(s).type === 'array' ? defOf(s).element : undefined;
      const of = element ? TYPE_WORDS[defOf(element).type] : undefined;
      const want = of?.startsWith('a ')
        ? `a list of ${of.slice(2)}s`
        : (TYPE_WORDS[issue.expected ?? ''] ?? issue.expected ?? 'something else');
      return [{ path: at, message: `must be ${want}; got ${shown(v)}` }];
    }
    default:
      return [{ path: at, message: issue.message }];
  }
}

/**
 * Validates `value` against a config schema. Throws one ConfigError with every issue, each with its
 * path and, for an unknown key or check name, the nearest known name.
 */
export function parseWith<S extends z.ZodType>(
  schema: S,
  value: unknown,
  checkNames: Iterable<string> = [],
): z.output<S> {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw new ConfigError('', 'must be a JSON object');
  }
  const r = schema.safeParse(value);
  if (r.success) return r.data;
  const names = new Set(checkNames);
  const issues = r.error.issues.flatMap((i) => issuesOf(schema, value, i as Issue, [], names));
  throw ConfigError.of(issues);
}
