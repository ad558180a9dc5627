/**
 * `os-fingerprint`: the connecting host's OS as p0f saw it, scored for `weigh()`.
 *
 * Mail servers run Linux, BSD, Solaris or Windows Server; bots run on desktops. A Windows
 * fingerprint alone proves nothing (Exchange runs on Windows Server, and p0f cannot tell Server
 * from desktop), so alone it is worth a small score. Together with two other doubts it is nearly
 * certain: a desktop OS, connecting from a country the site does not expect mail from, with no PTR
 * or a dynamic-looking one. That is the combination rule, worth `combinationScore`.
 *
 * The check only ever adds findings (action `score` or `greylist`): an OS guess is never proof
 * (DESIGN principle 1), and p0f being down or silent is `next` with the reason.
 */
import type { Check, CheckContext, Finding, Session, Verdict } from '@mxguard/core';
import { classifyPtr, hit, next, reply } from '@mxguard/core';
import { countryFromFindings } from './geo.js';
import type { GeoLookup } from './geo-database.js';
import { addressMatcher, parseAddress } from './ip.js';
import type { P0fLookup } from './p0f.js';

/** Default points by OS name (p0f's `os_name`, matched by prefix, case-insensitive). */
export const DEFAULT_OS_SCORES: Readonly<Record<string, number>> = {
  Windows: 1,
  'Mac OS X': 0.5,
  iOS: 1,
  Android: 1,
};

/** OS names (prefixes) that count as a desktop or handset for the combination rule. */
export const DEFAULT_DESKTOP_OS: readonly string[] = ['Windows', 'Mac OS X', 'iOS', 'Android'];

/** What the reverse DNS of the client looks like, for the combination rule. */
export type PtrState = 'missing' | 'dynamic' | 'ok' | 'unknown';

/** Options of `os-fingerprint`. */
export interface OsFingerprintOptions {
  /** Where to ask: a `P0fClient` on p0f's API socket. */
  readonly p0f: P0fLookup;
  /** Name in traces and config. @default 'os-fingerprint' */
  readonly name?: string;
  /**
   * Points by OS name prefix (longest prefix wins); OSes not listed (Linux, FreeBSD, unknown) score
   * nothing. Merged over the defaults; set a genre to 0 to silence it.
   * @default DEFAULT_OS_SCORES (Windows 1, Mac OS X 0.5, iOS 1, Android 1)
   */
  readonly scores?: Readonly<Record<string, number>>;
  /** OS name prefixes that count as desktop for the combination rule. @default DEFAULT_DESKTOP_OS */
  readonly desktop?: readonly string[];
  /**
   * Countries (ISO 3166-1 alpha-2) the site expects mail from. Unset: the combination rule is off,
   * since nothing is "unexpected".
   */
  readonly expectedCountries?: readonly string[];
  /**
   * Points of the combination (desktop OS + unexpected country + missing or dynamic PTR): meant to
   * reach `weigh()`'s reject threshold on its own.
   * @default 10
   */
  readonly combinationScore?: number;
  /**
   * Where the client's country comes from: this database, else the `country:XX` finding of an
   * earlier `geo` link (`geoCheckName`). Inside `weigh()`, members run in parallel and do not see
   * each other's findings: give the database then.
   */
  readonly geo?: GeoLookup;
  /** Name of the geo check whose findings carry the country. @default 'geo' */
  readonly geoCheckName?: string;
  /**
   * Whether a PTR name looks dynamic, when no earlier `rdns-dynamic` link said so.
   * @default looksDynamic (core's `classifyPtr`)
   */
  readonly isDynamicPtr?: (address: string, name: string) => boolean;
  /** `score` (points for `weigh()`) or `greylist` (the same, plus a doubt). @default 'score' */
  readonly action?: 'score' | 'greylist';
  /** Addresses and CIDRs never judged (the config factory adds `ourNetworks`). @default [] */
  readonly exempt?: readonly string[];
}

/**
 * Whether a PTR name looks like a dynamic pool: core's `classifyPtr` (the classifier behind
 * `rdns-dynamic`), so a session judged by both reads the name the same way.
 */
export function looksDynamic(address: string, name: string): boolean {
  try {
    return classifyPtr(address, name).class === 'dynamic';
  } catch {
    return false;
  }
}

/** Reads the PTR state from the session and from earlier `rdns-*` findings. */
export function ptrState(
  session: Session,
  findings: readonly Finding[],
  isDynamic: (address: string, name: string) => boolean = looksDynamic,
): PtrState {
  for (const f of findings) {
    if ((f.check === 'rdns-missing' && f.tag === 'no-ptr') || f.tag === 'no-ptr') return 'missing';
    if ((f.check === 'rdns-dynamic' && f.tag === 'dynamic') || f.tag === 'dynamic') return 'dynamic';
  }
  const rdns = session.rdns;
  if (!rdns || rdns.error === 'temporary') return 'unknown';
  if (rdns.names.length === 0) return 'missing';
  const name = typeof rdns.verified === 'string' && rdns.verified ? rdns.verified : rdns.names[0];
  if (name && isDynamic(session.clientAddress, name)) return 'dynamic';
  // A PTR whose forward lookup does not confirm it is as good as none (Postfix's "unknown" client).
  if (rdns.verified === null) return 'missing';
  return 'ok';
}

function prefixTable(t: Readonly<Record<string, number>>): [string, number][] {
  return Object.entries(t)
    .map(([k, v]): [string, number] => {
      if (typeof v !== 'number' || !Number.isFinite(v))
        throw new TypeError(`os-fingerprint: scores.${k} must be a number`);
      return [k.toLowerCase(), v];
    })
    .sort((a, b) => b[0].length - a[0].length);
}

/** Builds the `os-fingerprint` check. Throws TypeError on bad options. */
export function osFingerprintCheck(options: OsFingerprintOptions): Check {
  const name = options.name ?? 'os-fingerprint';
  if (!options.p0f || typeof options.p0f.query !== 'function') {
    throw new TypeError('os-fingerprint: p0f must be a P0fClient (or anything with query(address))');
  }
  // spread: once
  const scores = prefixTable({ ...DEFAULT_OS_SCORES, ...(options.scores ?? {}) });
  const desktop = (options.desktop ?? DEFAULT_DESKTOP_OS).map((d) => String(d).toLowerCase());
  const action = options.action ?? 'score';
  if (action !== 'score' && action !== 'greylist') {
    throw new TypeError(
      `os-fingerprint: action must be score or greylist (an OS guess is never proof), got ${String(action)}`,
    );
  }
  let expected: Set<string> | undefined;
  if (options.expectedCountries !== undefined) {
    expected = new Set();
    for (const c of options.expectedCountries) {
      const up = String(c).trim().toUpperCase();
      if (!/^[A-Z]{2}$/.test(up))
        throw new TypeError(`os-fingerprint: expectedCountries: "${String(c)}" is not a country code`);
      expected.add(up);
    }
  }
  const comboScore = options.combinationScore ?? 10;
  if (!Number.isFinite(comboScore)) throw new TypeError('os-fingerprint: combinationScore must be a number');
  const geoName = options.geoCheckName ?? 'geo';
  const isDynamic = options.isDynamicPtr ?? looksDynamic;
  const exempt = addressMatcher(options.exempt ?? []);
  // Never sent: the action is score or greylist. hit() wants the reply a reject would carry.
  const unused = reply(550, '5.7.1', 'Client host rejected: OS fingerprint');

  const countryOf = (address: string, findings: readonly Finding[]): string | undefined => {
    if (options.geo) {
      const a = options.geo.lookup(address);
      if (a.found) return a.country ?? a.registeredCountry;
    }
    return countryFromFindings(findings, geoName);
  };

  return {
    name,
    stage: 'connect',
    async run(session: Session, ctx: CheckContext): Promise<Verdict> {
      if (session.authUser) return next('authenticated client: not fingerprinted');
      const parsed = parseAddress(session.clientAddress);
      if (!parsed) return next('client address is not an IP address');
      if (exempt(parsed)) return next(`${parsed.text} is exempt`);
      let answer: Awaited<ReturnType<P0fLookup['query']>>;
      try {
        answer = await options.p0f.query(parsed.text);
      } catch (err) {
        // A P0fClient never rejects; a home-made lookup might. Still only "unknown".
        answer = { status: 'unknown', reason: err instanceof Error ? err.message : String(err) };
      }
      if (answer.status === 'unknown') return next(`p0f: unknown (${answer.reason})`);
      if (answer.status === 'no-match') return next(`p0f has not fingerprinted ${parsed.text}`);
      const h = answer.host;
      if (!h.osName)
        return next(`p0f: OS not recognised (distance ${h.distance})`, [{ check: name, tag: 'os:???' }]);
      const os = h.osName;
      const lower = os.toLowerCase();
      const points = scores.find(([p]) => lower.startsWith(p))?.[1] ?? 0;
      const what = `${parsed.text} fingerprints as ${os}${h.osFlavor ? ` ${h.osFlavor}` : ''}, distance ${h.distance}${
        h.linkType ? `, link ${h.linkType}` : ''
      }`;
      const findings: Finding[] = [];
      const reasons = [what];
      if (points !== 0) {
        const v = hit(name, action, unused, what, `os:${os}`, points);
        findings.push(...(v.findings ?? []));
      } else findings.push({ check: name, tag: `os:${os}` });

      if (expected && desktop.some((d) => lower.startsWith(d))) {
        const country = countryOf(parsed.text, ctx.findings);
        const ptr = ptrState(session, ctx.findings, isDynamic);
        if (country && !expected.has(country) && (ptr === 'missing' || ptr === 'dynamic')) {
          const why = `desktop OS ${os} from ${country} (not expected) with ${ptr} PTR`;
          reasons.push(why);
          const v = hit(name, action, unused, why, `desktop+${country}+${ptr}-ptr`, comboScore);
          findings.push(...(v.findings ?? []));
        }
      }
      return next(reasons.join('; '), findings);
    },
  };
}
