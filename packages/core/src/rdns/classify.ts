/**
 * The reverse-DNS dynamic-pool classifier: given a client address and its PTR name, does the name
 * look like an ISP's residential/dynamic pool, a mail server, or a fixed host?
 *
 * Pure and bounded: no I/O, no throw, work linear in a name capped at 253 characters (RFC 1035
 * section 2.3.4). Rules (see docs/checks/rdns.md for an example of each):
 * - Only the host part counts. tldts splits the name into the host part and the provider's
 *   registrable domain (Public Suffix List, ICANN section), so `comcast.net` or `dynu.com` never
 *   count as evidence; only what the provider put in front of them does.
 * - Tokens: the host part split on `.`, `-`, `_` and digits (`c-73-12-34-56.hsd1.ca` -> c, hsd, ca).
 * - Address embedding: the client address in the host part as decimal octets (forward, reversed,
 *   rotated or permuted, any separator), as one zero-padded or plain run of digits, as 8 hex
 *   digits (separators allowed), as its 32-bit integer, or as its last three octets.
 * - Precedence: mail role > pool word > static/hosting word > embedded address > access/customer
 *   word > partial address (first three or last two octets) with a generic word > opaque
 *   customer ID > nothing (static).
 */
import type { IPv4, IPv6 } from 'ipaddr.js';
import { parse as parseDomain } from 'tldts';
import { type ParsedIp, parseClientIp } from '../checks/names.js';

/**
 * What a PTR name looks like.
 * - `dynamic`: an ISP's pool or a generic per-address name (the kind M3AAWG's rDNS best practices
 *   say a mail server should not have).
 * - `mailserver`: the host part names a mail role (mail, mx, smtp, mta, relay, outbound, ...).
 * - `static`: a valid name with no pool evidence, or one the provider marks static or hosting.
 * - `unknown`: the address or the name is not usable (evidence says why).
 */
export type PtrClass = 'dynamic' | 'mailserver' | 'static' | 'unknown';

/** The answer of `classifyPtr`. */
export interface PtrClassification {
  /** What the name looks like: a dynamic pool, a mail server, a static host, or unknown. */
  readonly class: PtrClass;
  /** Why, one short phrase a finding (e.g. `pool word "dyn"`, `address in host part as hex 5b0c1d2e`). */
  readonly evidence: string[];
  /** The provider's registrable domain (e.g. `comcast.net`), `null` when the name has none. */
  readonly registrable: string | null;
}

/** RFC 1035: a name is at most 253 characters in text form, a label at most 63. */
const MAX_NAME = 253;
const MAX_LABEL = 63;
/** Longest IP text we parse (a full IPv6 with an embedded IPv4 and a zone fits easily). */
const MAX_IP = 64;
/**
 * A label of lower-case letters, digits, hyphen and underscore (tolerated because some PTR zones
 * carry it), neither starting nor ending with a hyphen: `/^[a-z0-9_](?:[a-z0-9_-]*[a-z0-9_])?$/`,
 * read character by character (a regular expression a label was a sixth of a classification).
 */
function isLabel(name: string, start: number, end: number): boolean {
  if (end <= start || end - start > MAX_LABEL) return false;
  if (name.charCodeAt(start) === 0x2d || name.charCodeAt(end - 1) === 0x2d) return false;
  for (let i = start; i < end; i++) {
    const c = name.charCodeAt(i);
    if (!((c >= 0x61 && c <= 0x7a) || (c >= 0x30 && c <= 0x39) || c === 0x5f || c === 0x2d)) return false;
  }
  return true;
}

/** True when `s[start..end)` is all ASCII digits (and not empty). */
function allDigits(s: string, start: number, end: number): boolean {
  if (end <= start) return false;
  for (let i = start; i < end; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x30 || c > 0x39) return false;
  }
  return true;
}

/** True for the characters that separate the words of a host part: `.`, `-`, `_` and digits. */
function separates(c: number): boolean {
  return c === 0x2e || c === 0x2d || c === 0x5f || (c >= 0x30 && c <= 0x39);
}

/**
 * Words that say the address belongs to a dynamically assigned pool. They beat mail and static
 * words: `mail.dyn.example` is a home server in a pool.
 */
const POOL_WORDS: ReadonlySet<string> = new Set([
  'dyn',
  'dynamic',
  'dynamicip',
  'dynip',
  'dinamic',
  'dinamico',
  'dinamica',
  'dynamique',
  'pool',
  'pools',
  'ppp',
  'pppoe',
  'pppoa',
  'dhcp',
  'dial',
  'dialup',
  'dialin',
  'dip', // "dial-in pool" (Deutsche Telekom's dip0.t-ipconnect.de, dip.t-dialin.net)
  'nat',
  'cgnat',
  'cgn',
  'ddns', // "dynamic DNS": Bulgarian and Balkan cable operators (x-x-x-x.ddns.example.bg)
  'dyna',
  'dynadsl',
  'dyndsl',
  'dynamisch', // Dutch, German
  'dynamiczny', // Polish
  'dynamiczne',
  'dinamikus', // Hungarian
  'dinamicki', // Croatian, Serbian
  'dinamik', // Turkish, Indonesian
  'dinamicas',
  'dinamicos',
  'dynaamiline', // Estonian
  'ippool',
  'dialpool',
]);

/** Access technologies and customer words: evidence of a residential line, beaten by mail and static words. */
const ACCESS_WORDS: ReadonlySet<string> = new Set([
  'dsl',
  'adsl',
  'vdsl',
  'xdsl',
  'cable',
  'cablemodem',
  'cm',
  'broadband',
  'bb',
  'ftth',
  'fttb',
  'fttc',
  'fttp',
  'fttx',
  'fios',
  'hsd',
  'fibertel',
  'cust',
  'customer',
  'customers',
  'kunde',
  'kunden',
  'cliente',
  'clientes',
  'client',
  'clients',
  'cpe',
  'res',
  'resi',
  'residential',
  'home',
  'subs',
  'subscriber',
  'subscribers',
  'abo',
  'abonne',
  'user',
  'users',
  'wireless',
  'wifi',
  'wlan',
  'mobile',
  'lte',
  'gprs',
  'umts',
  // Added after measuring on the labelled list and the published tables (docs/checks/rdns.md):
  // cable and DSL plant words, and "customer"/"subscriber"/"home" in the languages of large
  // access providers.
  'cbl', // cable (Charter's, Cablevision's cbl-... names)
  'catv',
  'kabel', // Dutch, German, Scandinavian
  'cabo', // Portuguese
  'modem',
  'cmts',
  'docsis',
  'hfc',
  'sdsl',
  'hdsl',
  'dsld',
  'gpon',
  'epon',
  'fibra', // Spanish, Portuguese, Italian
  'broad', // Chinese providers' x.x.x.x.broad.xx.xx.dynamic
  'bredband', // Swedish, Norwegian, Danish
  'laajakaista', // Finnish
  'klant', // Dutch
  'klanten',
  'kund', // Swedish
  'asiakas', // Finnish
  'ugyfel', // Hungarian
  'abonent', // Russian, Polish, Bulgarian (transliterated)
  'abon',
  'abonnes', // French
  'abonado', // Spanish
  'abonados',
  'assinante', // Portuguese
  'clienti', // Italian
  'utente',
  'utenti',
  'usuario',
  'usuarios',
  'hogar', // Spanish "home"
  'casa',
  'privat', // German, Scandinavian "private (customer)"
  'particulier', // French
  'residencial',
  'wimax',
  'hsdpa',
  'hspa',
  'cdma',
  'gsm',
]);

/** Generic words: evidence only beside a partial address (`host-12-34-56.example`). */
const GENERIC_WORDS: ReadonlySet<string> = new Set([
  'ip',
  'ipv',
  'host',
  'hst',
  'addr',
  'gen',
  'generic',
  'unassigned',
]);

/** Words a provider uses for fixed assignments and hosting; the provider is telling us it is not a pool. */
const STATIC_WORDS: ReadonlySet<string> = new Set([
  'static',
  'sta',
  'stat',
  'staticip',
  'statik',
  'statico',
  'estatico',
  'fixed',
  'fixe',
  'fix',
  'biz',
  'business',
  'corp',
  'corporate',
  'enterprise',
  'server',
  'servers',
  'srv',
  'svr',
  'vps',
  'vds',
  'dedicated',
  'dedi',
  'colo',
  'colocation',
  'hosting',
  'hosted',
  'compute',
  'cloud',
  'vm',
  'datacenter',
  'ns', // name servers and hosting companies' servers (OVH's ns3012345.ip-...)
  'dedic',
  'fija', // Spanish "fixed"
  'fixa', // Portuguese
  'fisso', // Italian
  'statisch', // Dutch, German
  'statyczny', // Polish
  'empresa', // Spanish, Portuguese "business"
  'empresas',
  'negocio',
  'pro',
]);

/** Mail roles. Any token containing `mail` or `smtp` also counts (gmail, mailout, smtpout, aaemail). */
const MAIL_WORDS: ReadonlySet<string> = new Set([
  'mx',
  'mxout',
  'mta',
  'mtaout',
  'out',
  'outbound',
  'outgoing',
  'relay',
  'relays',
  'sender',
  'bounce',
  'bounces',
  'newsletter',
  'exchange',
]);

function unknown(why: string, registrable: string | null = null): PtrClassification {
  return { class: 'unknown', evidence: [why], registrable };
}

/** The address as octets (IPv4, including IPv4-mapped IPv6) or 16-bit groups (IPv6); null when invalid. */
function parseIp(ip: string | ParsedIp): { v4: number[] } | { v6: number[] } | null {
  let p: ParsedIp | null;
  if (typeof ip === 'string') {
    if (ip.length > MAX_IP) return null;
    p = parseClientIp(ip);
  } else {
    p = ip;
  }
  if (!p) return null;
  if (p.v4 !== undefined) return { v4: [p.v4 >>> 24, (p.v4 >>> 16) & 255, (p.v4 >>> 8) & 255, p.v4 & 255] };
  return p.family === 4 ? { v4: (p.ip as IPv4).octets } : { v6: (p.ip as IPv6).parts };
}

/** True when `needle` occurs as consecutive elements of `hay`. */
function hasRun(hay: readonly number[], needle: readonly number[]): boolean {
  outer: for (let i = 0; i + needle.length <= hay.length; i++) {
    for (let j = 0; j < needle.length; j++) if (hay[i + j] !== needle[j]) continue outer;
    return true;
  }
  return false;
}

const hex2 = (n: number) => n.toString(16).padStart(2, '0');
const dec3 = (n: number) => String(n).padStart(3, '0');

/** How the IPv4 address appears in the host part: 'full' evidence, 'partial' evidence, or none. */
function findV4(host: string, o: readonly number[]): { full?: string; partial?: string } {
  const [a = 0, b = 0, c = 0, d = 0] = o;
  const runs = host.match(/\d+/g) ?? [];
  // Decimal octets, whatever the separator (c-73-12-34-56, 56.34.12.73.dyn, host86-1-2-3).
  const octs = runs.map((r) => (r.length <= 3 ? Number(r) : -1));
  if (hasRun(octs, [a, b, c, d])) return { full: 'address in host part as decimal octets' };
  if (hasRun(octs, [d, c, b, a])) return { full: 'address in host part as reversed decimal octets' };
  // One run of digits: zero-padded (073012034056), plain (7312345 6 without separators), 32-bit integer.
  const padded = [a, b, c, d].map(dec3).join('');
  const paddedRev = [d, c, b, a].map(dec3).join('');
  const plain = `${a}${b}${c}${d}`;
  const plainRev = `${d}${c}${b}${a}`;
  const int = String(((a << 24) >>> 0) + (b << 16) + (c << 8) + d);
  for (const r of runs) {
    if (r === padded || r === paddedRev) return { full: `address in host part as zero-padded digits ${r}` };
    if (r.length >= 7 && (r === plain || r === plainRev))
      return { full: `address in host part as digits ${r}` };
    if (r.length >= 8 && r === int) return { full: `address in host part as the integer ${r}` };
  }
  // Hex, forward or reversed (Deutsche Telekom's p5b0c1d2e.dip0), with or without separators
  // between the octets (c0-a8-01-02).
  const hx = [a, b, c, d].map(hex2).join('');
  const hxRev = [d, c, b, a].map(hex2).join('');
  const bare = host.replace(/[-._]/g, '');
  if (bare.includes(hx)) return { full: `address in host part as hex ${hx}` };
  if (bare.includes(hxRev)) return { full: `address in host part as reversed hex ${hxRev}` };
  // The four octets rotated or permuted (118.red-80-35-201 for 80.35.201.118, d53-64-35-171 for
  // 64.53.171.35): four runs in a row that are the octets in another order.
  const want = [a, b, c, d].sort((x, y) => x - y).join(',');
  for (let i = 0; i + 4 <= octs.length; i++) {
    const w = octs.slice(i, i + 4);
    if (!w.includes(-1) && [...w].sort((x, y) => x - y).join(',') === want)
      return { full: `octets in host part, permuted (${w.join('-')})` };
  }
  // The last three octets in order or reversed (the provider's /8 is implicit: 1-2-3.pool.example).
  if (hasRun(octs, [b, c, d]) || hasRun(octs, [d, c, b]))
    return {
      full: `last three octets in host part (${hasRun(octs, [b, c, d]) ? [b, c, d].join('-') : [d, c, b].join('-')})`,
    };
  // The first three, or the last two octets: a partial embedding, weak on its own
  // (m17-178.vip.126.com is a NetEase relay whose name carries its last two octets).
  for (const seq of [
    [a, b, c],
    [c, b, a],
    [c, d],
    [d, c],
  ]) {
    if (hasRun(octs, seq)) return { partial: `part of the address in host part (${seq.join('-')})` };
  }
  return {};
}

/**
 * An opaque per-customer identifier in one label: a run of 7 or more digits beside letters
 * (6 is too few: Apple's iCloud relays are mr85p00im-ztdg817341.me.com, Contabo's VPS vmi957109)
 * (pcp04024417pcs, p2640256-ipngn), 4 or more digit runs between letters (h234n2fls32o895), or 12
 * or more hex characters mixing digits and letters (a cable modem's MAC: s0106afee8c0fc544).
 */
function customerId(host: string): string | undefined {
  for (const label of host.split('.')) {
    for (const part of label.split(/[-_]/)) {
      if (!/[a-z]/.test(part)) continue;
      if (/\d{7,}/.test(part)) return `customer ID with a long digit run "${part}"`;
      if ((part.match(/\d+/g) ?? []).length >= 4 && /^[a-z]/.test(part))
        return `customer ID of letters and digit runs "${part}"`;
      const hexRun = /[0-9a-f]{12,}/.exec(part);
      if (hexRun && /\d/.test(hexRun[0]) && /[a-f]/.test(hexRun[0])) return `customer ID in hex "${part}"`;
    }
  }
  return undefined;
}

/** IPv6: the interface identifier (last four groups) or the whole address as hex groups. */
function findV6(host: string, parts: readonly number[]): { full?: string; partial?: string } {
  const groups = (host.match(/[0-9a-f]+/g) ?? []).map((g) => (g.length <= 4 ? Number.parseInt(g, 16) : -1));
  if (hasRun(groups, parts)) return { full: 'address in host part as hex groups' };
  if (hasRun(groups, parts.slice(4))) return { full: 'interface identifier in host part as hex groups' };
  return {};
}

function addOnce(list: string[], t: string): void {
  if (!list.includes(t)) list.push(t);
}

function words(kind: string, ts: readonly string[]): string[] {
  const out: string[] = [];
  for (const t of ts) out.push(`${kind} word "${t}"`);
  return out;
}

function isMailToken(t: string): boolean {
  return MAIL_WORDS.has(t) || t.includes('mail') || t.includes('smtp');
}

/**
 * Classifies a PTR name for the given client address. Never throws; bad input gives `unknown`
 * with the reason. Names longer than 253 characters are refused before any other work.
 */
export function classifyPtr(ip: string | ParsedIp, name: string): PtrClassification {
  if (typeof name !== 'string') return unknown('name is not a string');
  if (name.length === 0) return unknown('empty name');
  if (name.length > MAX_NAME + 1) return unknown(`name longer than ${MAX_NAME} characters`);
  const addr = parseIp(ip);
  if (!addr) return unknown('client address is not an IP address');
  const lower = name.toLowerCase();
  const fqdn = lower.endsWith('.') ? lower.slice(0, -1) : lower;
  if (fqdn.length === 0 || fqdn.length > MAX_NAME) return unknown('name is not a host name');
  // The labels read in place: where the last one starts, and how many there are.
  let labels = 0;
  let lastStart = 0;
  for (let start = 0; start <= fqdn.length; ) {
    let end = fqdn.indexOf('.', start);
    if (end < 0) end = fqdn.length;
    if (!isLabel(fqdn, start, end)) return unknown('name is not a host name');
    labels++;
    lastStart = start;
    start = end + 1;
  }
  if (labels < 2) return unknown('name has a single label');
  if (allDigits(fqdn, lastStart, fqdn.length)) return unknown('name is an address, not a host name');

  let registrable: string | null = null;
  let host = '';
  try {
    const parsed = parseDomain(fqdn, { extractHostname: false });
    registrable = parsed.domain;
    host = parsed.subdomain ?? '';
  } catch {
    return unknown('name could not be split into host part and domain');
  }
  if (registrable === null) return unknown('name has no registrable domain');
  if (host === '')
    return { class: 'static', evidence: ['name is the registrable domain itself'], registrable };

  // One pass over the host part's words, each sorted into the lists it belongs to (no duplicates).
  const mail: string[] = [];
  const pool: string[] = [];
  const access: string[] = [];
  const generic: string[] = [];
  const fixed: string[] = [];
  // The words: runs of the characters that do not separate them (`[.\-_0-9]`), read in place.
  for (let i = 0; i < host.length; ) {
    while (i < host.length && separates(host.charCodeAt(i))) i++;
    const from = i;
    while (i < host.length && !separates(host.charCodeAt(i))) i++;
    if (i === from) continue;
    const t = host.slice(from, i);
    if (isMailToken(t)) addOnce(mail, t);
    if (POOL_WORDS.has(t)) addOnce(pool, t);
    if (ACCESS_WORDS.has(t)) addOnce(access, t);
    if (GENERIC_WORDS.has(t)) addOnce(generic, t);
    if (STATIC_WORDS.has(t)) addOnce(fixed, t);
  }
  const out = (cls: PtrClass, evidence: string[]): PtrClassification => ({
    class: cls,
    evidence,
    registrable,
  });

  if (mail.length > 0 && pool.length === 0) return out('mailserver', words('mail-role', mail));
  const embedded = 'v4' in addr ? findV4(host, addr.v4) : findV6(host, addr.v6);
  if (pool.length > 0) {
    const ev = [...words('pool', pool), ...words('access', access)];
    if (embedded.full) ev.push(embedded.full);
    return out('dynamic', ev);
  }
  if (fixed.length > 0) return out('static', words('static', fixed));
  if (embedded.full)
    return out('dynamic', [embedded.full, ...words('access', access), ...words('generic', generic)]);
  if (access.length > 0) {
    const ev = words('access', access);
    if (embedded.partial) ev.push(embedded.partial);
    return out('dynamic', ev);
  }
  if (embedded.partial && generic.length > 0)
    return out('dynamic', [embedded.partial, ...words('generic', generic)]);
  const id = customerId(host);
  if (id) return out('dynamic', [id]);
  return out('static', ['no pool evidence in host part']);
}
