/**
 * `geo`: the country (and AS) of the connecting IP, from a MaxMind-format database, as a policy
 * (allow only listed countries, or deny listed ones) or as scores for `weigh()`.
 *
 * Geolocation is an estimate, not a fact the client told us: by DESIGN principle 1 it never proves
 * anything false, so a miss defaults to `greylist` (a doubt for the selective greylist), never a
 * 5xx. A site that truly wants to refuse a country says `action: "reject"`.
 */
import type { Check, CommonCheckOptions, Finding, HitAction, Reply, Session, Verdict } from '@mxguard/core';
import { HIT_ACTIONS, hit, next, reply } from '@mxguard/core';
import type { GeoAnswer, GeoLookup } from './geo-database.js';
import { addressMatcher, parseAddress } from './ip.js';

/** Which country of a record a policy looks at. */
export type CountryField =
  /** Where the address is used; falls back to the registered country when the record has none. */
  | 'country'
  /** Where the network is registered (RIR data): steadier, but wrong for multinational networks. */
  | 'registered'
  /** Listed if either is: for a deny list, the stricter reading; for an allow list, the looser. */
  | 'either';

/** Options of the `geo` check. */
export interface GeoCheckOptions extends CommonCheckOptions {
  /** The database. In config files, a path (see `signalsFactories`). */
  readonly database: GeoLookup;
  /** Name in traces and config. @default 'geo' */
  readonly name?: string;
  /**
   * Allow only these countries (ISO 3166-1 alpha-2): every other country is a miss (default-deny).
   * Unknown addresses are never a miss. Not together with `deny`.
   */
  readonly allow?: readonly string[];
  /** These countries are a miss. Not together with `allow`. */
  readonly deny?: readonly string[];
  /** These autonomous systems are a miss (needs an ASN database, or an enterprise one with `traits`). */
  readonly denyAsn?: readonly number[];
  /** Points for `weigh()` by country code (negative: toward ham), added whatever the policy. */
  readonly scores?: Readonly<Record<string, number>>;
  /** Points for `weigh()` by AS number (as a string key, JSON-friendly). */
  readonly asnScores?: Readonly<Record<string, number>>;
  /** @default 'country' */
  readonly field?: CountryField;
  /**
   * What a miss does. Geolocation proves nothing false, hence no 5xx unless asked for.
   * @default 'greylist'
   */
  readonly action?: HitAction;
  /** Points a miss carries with `greylist` or `score`. @default 1 */
  readonly score?: number;
  /** The reply when `action` is `reject` (softened to 4xx for the defer actions). @default 554 5.7.1 */
  readonly reply?: Reply;
  /**
   * Addresses and CIDRs never judged. The config factory adds the site's `ourNetworks` and the
   * address entries of `trustedForwarders`.
   * @default []
   */
  readonly exempt?: readonly string[];
}

const ISO = /^[A-Z]{2}$/;

function countries(list: readonly string[] | undefined, what: string): Set<string> | undefined {
  if (list === undefined) return undefined;
  if (!Array.isArray(list)) throw new TypeError(`geo: ${what} must be a list of country codes`);
  const out = new Set<string>();
  for (const c of list) {
    const up = typeof c === 'string' ? c.trim().toUpperCase() : '';
    if (!ISO.test(up)) throw new TypeError(`geo: ${what}: "${String(c)}" is not an ISO 3166-1 alpha-2 code`);
    out.add(up);
  }
  return out;
}

function scoreTable(
  t: Readonly<Record<string, number>> | undefined,
  what: string,
  key: (k: string) => string,
) {
  const out = new Map<string, number>();
  for (const [k, v] of Object.entries(t ?? {})) {
    if (typeof v !== 'number' || !Number.isFinite(v))
      throw new TypeError(`geo: ${what}.${k} must be a number`);
    out.set(key(k), v);
  }
  return out;
}

/** The countries of an answer that a policy compares, per `field`. */
function countriesOf(a: GeoAnswer & { found: true }, field: CountryField): string[] {
  const c = a.country ?? a.registeredCountry;
  switch (field) {
    case 'country':
      return c ? [c] : [];
    case 'registered':
      return a.registeredCountry ? [a.registeredCountry] : [];
    case 'either':
      return [...new Set([a.country, a.registeredCountry].filter((x): x is string => !!x))];
  }
}

/**
 * Informational findings (no score) that later links read: `country:XX`, `asn:N`. The
 * `os-fingerprint` combination rule looks for `country:XX` from check `geo`.
 */
export function geoFindings(check: string, a: GeoAnswer): Finding[] {
  if (!a.found) return [];
  const out: Finding[] = [];
  const c = a.country ?? a.registeredCountry;
  if (c) out.push({ check, tag: `country:${c}` });
  if (a.asn !== undefined) out.push({ check, tag: `asn:${a.asn}` });
  return out;
}

/** Reads the client's country from an earlier `geo` link's findings, if any. */
export function countryFromFindings(findings: readonly Finding[], check = 'geo'): string | undefined {
  for (const f of findings) {
    if (f.check === check && f.tag.startsWith('country:')) {
      const c = f.tag.slice(8);
      if (ISO.test(c)) return c;
    }
  }
  return undefined;
}

/** Builds the `geo` check. Throws TypeError on bad options (a config error, reported at startup). */
export function geoCheck(options: GeoCheckOptions): Check {
  const name = options.name ?? 'geo';
  if (!options.database || typeof options.database.lookup !== 'function') {
    throw new TypeError('geo: database must be a GeoDatabase (or anything with lookup(address))');
  }
  const allow = countries(options.allow, 'allow');
  const deny = countries(options.deny, 'deny');
  if (allow && deny) throw new TypeError('geo: give allow or deny, not both');
  const denyAsn = new Set<number>();
  for (const n of options.denyAsn ?? []) {
    if (!Number.isInteger(n) || n < 0) throw new TypeError(`geo: denyAsn: ${String(n)} is not an AS number`);
    denyAsn.add(n);
  }
  const scores = scoreTable(options.scores, 'scores', (k) => k.trim().toUpperCase());
  const asnScores = scoreTable(options.asnScores, 'asnScores', (k) => String(Number(k.replace(/^AS/i, ''))));
  const field = options.field ?? 'country';
  if (!['country', 'registered', 'either'].includes(field))
    throw new TypeError(`geo: field "${field}" is unknown`);
  const action = options.action ?? 'greylist';
  if (!HIT_ACTIONS.includes(action))
    throw new TypeError(`geo: action "${action}" is not one of ${HIT_ACTIONS}`);
  const missScore = options.score ?? 1;
  if (!Number.isFinite(missScore)) throw new TypeError('geo: score must be a number');
  const exempt = addressMatcher(options.exempt ?? []);
  const db = options.database;

  const miss = (tag: string, why: string, info: Finding[], extra: Finding[]): Verdict => {
    const r =
      options.reply ??
      reply(554, '5.7.1', `Service unavailable; mail from your location is not accepted here`);
    const v = hit(name, action, r, why, tag, missScore);
    return Object.assign({}, v, { findings: [...info, ...(v.findings ?? []), ...extra] });
  };

  return {
    name,
    stage: 'connect',
    run(session: Session): Verdict {
      // Authenticated users roam (a hotel abroad): geoblocking is for strangers only.
      if (session.authUser) return next('authenticated client: not geolocated');
      const parsed = parseAddress(session.clientAddress);
      if (!parsed)
        return next(`client address "${String(session.clientAddress).slice(0, 64)}" is not an IP address`);
      if (exempt(parsed)) return next(`${parsed.text} is exempt`);
      const a = db.lookup(parsed.text);
      if (!a.found) return next(`${a.address}: unknown location (${a.reason})`);
      const info = geoFindings(name, a);
      const scored: Finding[] = [];
      const cs = countriesOf(a, field);
      for (const c of cs) {
        const s = scores.get(c);
        if (s !== undefined && s !== 0) scored.push({ check: name, tag: `score:${c}`, score: s });
      }
      if (a.asn !== undefined) {
        const s = asnScores.get(String(a.asn));
        if (s !== undefined && s !== 0) scored.push({ check: name, tag: `score:AS${a.asn}`, score: s });
      }
      const where = `${a.address} in ${cs.join('/') || 'no country'}${a.asn !== undefined ? ` AS${a.asn}` : ''}`;
      if (a.asn !== undefined && denyAsn.has(a.asn)) {
        return miss(`asn-denied:AS${a.asn}`, `${where}: AS${a.asn} is denied`, info, scored);
      }
      if (deny) {
        const hitc = cs.find((c) => deny.has(c));
        if (hitc) return miss(`denied:${hitc}`, `${where}: ${hitc} is denied`, info, scored);
      }
      if (allow) {
        if (cs.length === 0) return next(`${where}: no country in the record`, [...info, ...scored]);
        if (!cs.some((c) => allow.has(c))) {
          return miss(`not-allowed:${cs.join('/')}`, `${where}: not an allowed country`, info, scored);
        }
      }
      return next(where, [...info, ...scored]);
    },
  };
}
