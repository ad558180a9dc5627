/**
 * The signals as config files name them: `geo` and `os-fingerprint`, with plain-JSON options.
 *
 *   {"name": "geo", "database": "/var/lib/GeoIP/GeoLite2-Country.mmdb", "allow": ["DE", "FR"]}
 *   {"name": "os-fingerprint", "socket": "/run/p0f.sock", "expectedCountries": ["DE"],
 *    "database": "/var/lib/GeoIP/GeoLite2-Country.mmdb"}
 *
 *   {"name": "received", "lists": ["zen.spamhaus.org=127.0.0.[2..11]"], "score": 0.5, "maxScore": 1}
 *
 * `received` reads `session.headers` at DATA and only ever scores: it has no `action` option and
 * refuses one (DESIGN principle 3). `receivedRelays`/`scoreReceived` remain for code that holds
 * the headers itself.
 */
import type { Check, CheckFactory, Clock, Logger, Site } from '@mxguard/core';
import { checkFactory, checkOptions, silentLogger, stringList, systemClock, z } from '@mxguard/core';
import type { Resolver } from '@mxguard/dns';
import type { CountryField, GeoCheckOptions } from './geo.js';
import { geoCheck } from './geo.js';
import { GeoDatabases } from './geo-database.js';
import type { OsFingerprintOptions } from './os-fingerprint.js';
import { osFingerprintCheck } from './os-fingerprint.js';
import type { P0fLookup } from './p0f.js';
import { P0fClient } from './p0f.js';
import type { ReceivedCheckOptions } from './received-check.js';
import { receivedCheck } from './received-check.js';

/** What the signals need besides their options. */
export interface SignalsEnv {
  /**
   * Databases by path, opened once and watched; `geo` and `os-fingerprint` naming the same file
   * share it. Without it each check opens its own copy.
   */
  readonly geo?: GeoDatabases;
  /** A p0f client to use instead of one made from the `socket` option (tests, or a shared client). */
  readonly p0f?: P0fLookup;
  /** Clock for the p0f answer cache. @default systemClock */
  readonly clock?: Clock;
  /** Where the signals log database reloads and p0f failures. */
  readonly log?: Logger;
  /**
   * Whether a PTR name looks dynamic, for the os-fingerprint combination rule when no earlier
   * `rdns-dynamic` link said so. @default `looksDynamic` (core's `classifyPtr`)
   */
  readonly isDynamicPtr?: (address: string, name: string) => boolean;
  /**
   * The DNS that `received` asks about the relays. Without it (offline) `received` is built but
   * answers `next("skipped: no resolver")`.
   */
  readonly resolver?: Resolver;
}

/** A SignalsEnv with its own shared geo databases, and `close()` to stop their file watchers. */
export function createSignalsEnv(options: Omit<SignalsEnv, 'geo'> = {}): SignalsEnv & {
  /** The shared geo databases, opened on first use. */
  readonly geo: GeoDatabases;
  /** Stops the databases' file watchers. */
  close(): void;
} {
  const geo = new GeoDatabases({ log: options.log ?? silentLogger });
  return { ...options, geo, close: () => geo.close() };
}

type Opts = Record<string, unknown>;

function known(check: string, o: Opts, keys: readonly string[]): void {
  for (const k of Object.keys(o)) {
    if (!keys.includes(k)) throw new TypeError(`${check}: unknown option "${k}" (known: ${keys.join(', ')})`);
  }
}

function str(check: string, o: Opts, k: string, required: true): string;
function str(check: string, o: Opts, k: string, required?: boolean): string | undefined;
function str(check: string, o: Opts, k: string, required = false): string | undefined {
  const v = o[k];
  if (v === undefined) {
    if (required) throw new TypeError(`${check}: option "${k}" is required`);
    return undefined;
  }
  if (typeof v !== 'string' || v.length === 0)
    throw new TypeError(`${check}: "${k}" must be a non-empty string`);
  return v;
}

function num(check: string, o: Opts, k: string): number | undefined {
  const v = o[k];
  if (v === undefined) return undefined;
  if (typeof v !== 'number' || !Number.isFinite(v)) throw new TypeError(`${check}: "${k}" must be a number`);
  return v;
}

function list<T>(check: string, o: Opts, k: string, type: 'string' | 'number'): T[] | undefined {
  const v = o[k];
  if (v === undefined) return undefined;
  if (!Array.isArray(v) || !v.every((x) => typeof x === type)) {
    throw new TypeError(`${check}: "${k}" must be a list of ${type}s`);
  }
  return v as T[];
}

function table(check: string, o: Opts, k: string): Record<string, number> | undefined {
  const v = o[k];
  if (v === undefined) return undefined;
  if (typeof v !== 'object' || v === null || Array.isArray(v)) {
    throw new TypeError(`${check}: "${k}" must be an object of numbers`);
  }
  for (const [kk, x] of Object.entries(v)) {
    if (typeof x !== 'number' || !Number.isFinite(x))
      throw new TypeError(`${check}: "${k}.${kk}" must be a number`);
  }
  return v as Record<string, number>;
}

/** The site's own networks and forwarders are never geoblocked or fingerprinted. */
function siteExempt(site: Site, extra: readonly string[] | undefined): string[] {
  return [...site.ourNetworks, ...site.ourAddresses, ...site.trustedForwarders, ...(extra ?? [])];
}

function openGeo(path: string, env: SignalsEnv) {
  // One copy per path when the env shares databases; else this check's own, watched copy.
  return (env.geo ?? new GeoDatabases({ log: env.log ?? silentLogger })).open(path);
}

const exempt = stringList.optional().describe('Clients never judged (beside our networks and forwarders)');
const pointsTable = z.record(z.string(), z.number());

/** The options of `geo`. */
export const geoOptions = checkOptions({
  database: z.string().describe('Path of the MaxMind (mmdb) database'),
  allow: stringList.optional().describe('Countries (ISO 3166 codes) allowed; others hit'),
  deny: stringList.optional().describe('Countries that hit'),
  denyAsn: z.array(z.number()).optional().describe('AS numbers that hit (needs an ASN database)'),
  scores: pointsTable.optional().describe('Points by country'),
  asnScores: pointsTable.optional().describe('Points by AS number'),
  field: z
    .enum(['country', 'registered', 'either'])
    .optional()
    .describe(
      'Which country is judged: where the address is used (country), where its network is registered (registered), or either. Default: country',
    ),
  exempt,
});

/** The options of `os-fingerprint`. */
export const osFingerprintOptions = z.strictObject({
  socket: z.string().optional().describe("p0f's API socket (p0f -s)"),
  timeoutMs: z.number().optional().describe('Longest wait for p0f, in ms, connection included. Default: 500'),
  database: z.string().optional().describe('A geo database, for the expected-countries rule'),
  expectedCountries: stringList
    .optional()
    .describe('Countries the site expects mail from; unset, the combination rule is off'),
  combinationScore: z
    .number()
    .optional()
    .describe('Points of desktop OS + unexpected country + missing or dynamic PTR. Default: 10'),
  scores: pointsTable.optional().describe('Points by OS name prefix, merged over the defaults'),
  desktop: stringList.optional().describe('OS name prefixes that count as desktop for the combination rule'),
  action: z
    .enum(['score', 'greylist'], { error: 'must be score or greylist: an OS guess is never proof' })
    .optional()
    .describe('score (default) or greylist: an OS guess is never proof'),
  geoCheckName: z
    .string()
    .optional()
    .describe('Name of the geo check whose findings carry the country. Default: geo'),
  exempt,
});

/** The options of `received` (no `action`: it only adds points for a weigh). */
export const receivedOptions = z.strictObject({
  action: z
    .literal('warn', {
      error:
        'no hit action: Received headers are claims by strangers, so received only adds points for a ' +
        '"weigh" link and never rejects, defers or greylists on its own (DESIGN principle 3)',
    })
    .optional()
    .describe('Only warn: received never rejects, defers or greylists'),
  lists: stringList.min(1).describe('DNS lists the relays are looked up in, "zone=filter" without weights'),
  score: z.number().optional().describe('Points per listed relay. Default: 0.5'),
  maxScore: z
    .number()
    .optional()
    .describe("Cap on the check's total, below every weigh threshold. Default: 1"),
  skipTop: z
    .number()
    .optional()
    .describe('Topmost headers skipped: 1 per own hop that stamps first. Default: 0'),
  maxRelays: z
    .number()
    .optional()
    .describe('Relays looked up at most, topmost first, after skipTop. Default: 5'),
  trusted: stringList.optional().describe('Addresses and CIDRs never looked up (our relays, our forwarders)'),
});

const GEO_KEYS = [
  'database',
  'allow',
  'deny',
  'denyAsn',
  'scores',
  'asnScores',
  'field',
  'action',
  'score',
  'exempt',
] as const;

/** `geo` from JSON options. `database` (a path) is required. */
export const geoFactory: CheckFactory<SignalsEnv> = (o, site, env): Check => {
  const c = 'geo';
  known(c, o, GEO_KEYS);
  const path = str(c, o, 'database', true);
  const options: { -readonly [K in keyof GeoCheckOptions]: GeoCheckOptions[K] } = {
    database: openGeo(path, env),
    exempt: siteExempt(site, list<string>(c, o, 'exempt', 'string')),
  };
  const allow = list<string>(c, o, 'allow', 'string');
  const deny = list<string>(c, o, 'deny', 'string');
  const denyAsn = list<number>(c, o, 'denyAsn', 'number');
  const scores = table(c, o, 'scores');
  const asnScores = table(c, o, 'asnScores');
  const field = str(c, o, 'field');
  const action = str(c, o, 'action');
  const score = num(c, o, 'score');
  if (allow) options.allow = allow;
  if (deny) options.deny = deny;
  if (denyAsn) options.denyAsn = denyAsn;
  if (scores) options.scores = scores;
  if (asnScores) options.asnScores = asnScores;
  if (field) options.field = field as CountryField;
  if (action) options.action = action as GeoCheckOptions['action'] & string;
  if (score !== undefined) options.score = score;
  return geoCheck(options);
};

const OS_KEYS = [
  'socket',
  'timeoutMs',
  'database',
  'expectedCountries',
  'combinationScore',
  'scores',
  'desktop',
  'action',
  'geoCheckName',
  'exempt',
] as const;

/** `os-fingerprint` from JSON options. `socket` (p0f's `-s` path) is required unless the env has a client. */
export const osFingerprintFactory: CheckFactory<SignalsEnv> = (o, site, env): Check => {
  const c = 'os-fingerprint';
  known(c, o, OS_KEYS);
  const socket = str(c, o, 'socket', env.p0f === undefined);
  const timeoutMs = num(c, o, 'timeoutMs');
  const p0f =
    env.p0f ??
    new P0fClient({
      socketPath: socket as string,
      clock: env.clock ?? systemClock,
      log: env.log ?? silentLogger,
      ...(timeoutMs !== undefined ? { timeoutMs } : {}),
    });
  const options: { -readonly [K in keyof OsFingerprintOptions]: OsFingerprintOptions[K] } = {
    p0f,
    exempt: siteExempt(site, list<string>(c, o, 'exempt', 'string')),
  };
  const database = str(c, o, 'database');
  if (database) options.geo = openGeo(database, env);
  const expected = list<string>(c, o, 'expectedCountries', 'string');
  if (expected) options.expectedCountries = expected;
  const combo = num(c, o, 'combinationScore');
  if (combo !== undefined) options.combinationScore = combo;
  const scores = table(c, o, 'scores');
  if (scores) options.scores = scores;
  const desktop = list<string>(c, o, 'desktop', 'string');
  if (desktop) options.desktop = desktop;
  const action = str(c, o, 'action');
  if (action) options.action = action as 'score' | 'greylist';
  const geoName = str(c, o, 'geoCheckName');
  if (geoName) options.geoCheckName = geoName;
  if (env.isDynamicPtr) options.isDynamicPtr = env.isDynamicPtr;
  return osFingerprintCheck(options);
};

const RECEIVED_KEYS = ['lists', 'score', 'maxScore', 'skipTop', 'maxRelays', 'trusted'] as const;

/**
 * `received` from JSON options: `lists` (required), `score`, `maxScore`, `skipTop`, `maxRelays`,
 * `trusted`. The site's own networks, addresses and trusted forwarders are never looked up. An
 * `action` is refused with the reason: this check scores, it never decides.
 */
export const receivedFactory: CheckFactory<SignalsEnv> = (o, site, env): Check => {
  const c = 'received';
  if (o.action !== undefined) {
    throw new TypeError(
      `${c}: no "action" option: Received headers are claims by strangers, so this check only adds ` +
        'points for a "weigh" link and never rejects, defers or greylists on its own (DESIGN principle 3: ' +
        'judge the connecting IP, never the Received headers; dnsbl judges the connecting IP)',
    );
  }
  known(c, o, RECEIVED_KEYS);
  const options: { -readonly [K in keyof ReceivedCheckOptions]: ReceivedCheckOptions[K] } = {
    lists: o.lists as ReceivedCheckOptions['lists'],
    trusted: siteExempt(site, list<string>(c, o, 'trusted', 'string')),
  };
  const score = num(c, o, 'score');
  const maxScore = num(c, o, 'maxScore');
  const skipTop = num(c, o, 'skipTop');
  const maxRelays = num(c, o, 'maxRelays');
  if (score !== undefined) options.score = score;
  if (maxScore !== undefined) options.maxScore = maxScore;
  if (skipTop !== undefined) options.skipTop = skipTop;
  if (maxRelays !== undefined) options.maxRelays = maxRelays;
  if (env.resolver) options.resolver = env.resolver;
  return receivedCheck(options);
};

/**
 * The signals by config name: `geo`, `os-fingerprint` and `received`. Bind with core's
 * `bindFactories(signalsFactories, env)`.
 */
export const signalsFactories: Record<string, CheckFactory<SignalsEnv>> = {
  geo: checkFactory<SignalsEnv>(geoOptions, geoFactory),
  'os-fingerprint': checkFactory<SignalsEnv>(osFingerprintOptions, osFingerprintFactory),
  received: checkFactory<SignalsEnv>(receivedOptions, receivedFactory),
};
