/**
 * Access tables, as Postfix's check_client_access, check_reverse_client_hostname_access,
 * check_helo_access, check_sender_access and check_recipient_access with access(5) semantics.
 * See docs/checks/access.md.
 */
import type { Check, Finding, Session, Stage, Verdict } from '../model.js';
import { accept, defer, next, reject, reply } from '../reply.js';
import { type TableEnv, type TableFile, tableFile } from '../tables/file.js';
import {
  type Captures,
  logicalLines,
  matchPatternTable,
  type PatternTable,
  parsePatternTable,
  parseTableRef,
  substitute,
  type TableType,
} from '../tables/postfix.js';
import { showAddress } from './address.js';
import { showHelo } from './helo.js';
import {
  isValidHostname,
  normaliseName,
  parseHeloLiteral,
  parseIp,
  parseNetwork,
  stripRootDot,
} from './names.js';
import { oneLine } from './relay.js';

/** What an access table looks up. */
export type AccessKey = 'client' | 'helo' | 'sender' | 'recipient' | 'rdns';

/**
 * Table entries: Postfix access-file text (`key value` a line, `#` comments, a line starting with
 * white space continues the previous one), an object `{key: value}`, or `[key, value]` pairs.
 */
export type AccessEntries =
  | string
  | Readonly<Record<string, string>>
  | readonly (readonly [string, string])[];

/** Options of {@link accessTable}. Exactly one of `entries` and `table`. */
export interface AccessTableOptions {
  /** Check name (config key and trace label). @default `${key}-access` */
  readonly name?: string;
  /** What is looked up. */
  readonly key: AccessKey;
  /** The table inline, in access(5) form. */
  readonly entries?: AccessEntries;
  /**
   * A table file in one of Postfix's formats, `type:/absolute/path`: `regexp:`, `pcre:`, `cidr:`, or
   * the `key value` source text of `hash:` (also `btree:`, `lmdb:`, `cdb:`, `texthash:`). Needs a
   * {@link TableEnv} (the CLI gives one). The file is followed: see `tableFile`.
   */
  readonly table?: string;
}

type Result =
  | { readonly kind: 'accept' }
  | { readonly kind: 'dunno' }
  | { readonly kind: 'warn'; readonly text: string }
  | { readonly kind: 'doubt'; readonly delay?: number; readonly text: string }
  | { readonly kind: 'score'; readonly score: number; readonly text: string }
  | {
      readonly kind: 'reject' | 'defer';
      readonly code: number;
      readonly enhanced: string;
      readonly text: string;
      readonly ifPermit: boolean;
    };

/** Postfix defaults: access_map_reject_code = 554, access_map_defer_code = 450. */
const MAP_REJECT_CODE = 554;
const MAP_DEFER_CODE = 450;
/** RFC 5321 4.5.3.1.4: a command line is at most 512 octets; no regex is run on more than that. */
const MAX_REGEX_INPUT = 512;
const DSN = /^([245])\.(\d{1,3})\.(\d{1,3})(?:\s+|$)/;

/** Splits an optional leading enhanced status code off the text (Postfix's dsn_split()). */
function dsnSplit(text: string, dflt: string, codeClass: string): { enhanced: string; text: string } {
  const m = DSN.exec(text);
  // The class of the enhanced code follows the reply code, as Postfix's smtpd_dsn_fix() makes it.
  if (!m) return { enhanced: `${codeClass}${dflt.slice(1)}`, text };
  return { enhanced: `${codeClass}.${m[2]}.${m[3]}`, text: text.slice(m[0].length) };
}

/** Postfix time units (`300s`, `5m`, `1h`, `2d`, `1w`); a bare number is seconds. */
const TIME = /^(\d{1,7})([smhdw]?)$/;
const UNIT: Record<string, number> = { '': 1, s: 1, m: 60, h: 3600, d: 86_400, w: 604_800 };
/** Longest greylist delay a table may ask for: a week, as a longer one is a reject in disguise. */
const MAX_DELAY_S = 604_800;

/** Parses an access(5) right-hand side. Throws TypeError naming `where` on anything else. */
function parseAction(value: string, where: string): Result {
  const v = value.trim();
  const sp = v.search(/\s/);
  const cmd = (sp < 0 ? v : v.slice(0, sp)).toUpperCase();
  const text = sp < 0 ? '' : v.slice(sp).trim();
  if (/[\r\n]/.test(text)) throw new TypeError(`${where}: the reply text must be one line`);
  switch (cmd) {
    case 'OK':
    case 'RELAY':
    case 'ACCEPT':
      return { kind: 'accept' };
    case 'DUNNO':
      return { kind: 'dunno' };
    case 'WARN':
      return { kind: 'warn', text };
    case 'GREYLIST': {
      // GREYLIST [delay] [text]: a doubt for the selective greylist, as the reputation check leaves.
      const sp2 = text.search(/\s/);
      const first = sp2 < 0 ? text : text.slice(0, sp2);
      const t = TIME.exec(first);
      if (!t) return { kind: 'doubt', text };
      const delay = Number(t[1]) * (UNIT[t[2] as string] as number);
      if (delay < 1 || delay > MAX_DELAY_S)
        throw new TypeError(`${where}: GREYLIST delay "${first}" must be 1s to 1w`);
      return { kind: 'doubt', delay, text: sp2 < 0 ? '' : text.slice(sp2).trim() };
    }
    case 'SCORE': {
      // SCORE points [text]: points for weigh(), no verdict.
      const sp2 = text.search(/\s/);
      const first = sp2 < 0 ? text : text.slice(0, sp2);
      const score = /^[+-]?\d{1,4}(\.\d{1,3})?$/.test(first) ? Number(first) : Number.NaN;
      if (!Number.isFinite(score))
        throw new TypeError(`${where}: SCORE needs a number of points (e.g. "SCORE 2.5"), got "${first}"`);
      return { kind: 'score', score, text: sp2 < 0 ? '' : text.slice(sp2).trim() };
    }
    case 'REJECT': {
      const d = dsnSplit(text, '5.7.1', '5');
      return { kind: 'reject', code: MAP_REJECT_CODE, ...d, ifPermit: false };
    }
    case 'DEFER':
    case 'DEFER_IF_PERMIT': {
      const d = dsnSplit(text, '4.7.1', '4');
      return { kind: 'defer', code: MAP_DEFER_CODE, ...d, ifPermit: cmd === 'DEFER_IF_PERMIT' };
    }
  }
  if (/^[45]\d\d$/.test(cmd)) {
    // Postfix requires text after a bare code (and reads an all-numeric value as OK, a historic
    // quirk we refuse: a bare "550" is far more likely a mistake).
    if (text === '') throw new TypeError(`${where}: "${cmd}" needs a reply text`);
    const code = Number(cmd);
    const d = dsnSplit(text, `${cmd[0]}.7.1`, cmd[0] as string);
    return { kind: code >= 500 ? 'reject' : 'defer', code, ...d, ifPermit: false };
  }
  throw new TypeError(
    `${where}: action "${value}" is not one of OK, REJECT [text], DEFER [text], DEFER_IF_PERMIT [text], DUNNO, WARN [text], GREYLIST [delay] [text], SCORE points [text], 4xx text, 5xx text`,
  );
}

/** Splits a text line into key and value; a regexp key may contain white space. */
function splitLine(line: string, where: string): [string, string] {
  if (line.startsWith('/')) {
    for (let i = 1; i < line.length; i++) {
      if (line[i] === '\\') {
        i++;
        continue;
      }
      if (line[i] === '/') {
        const m = /^[a-z]*(?=\s|$)/.exec(line.slice(i + 1));
        if (m) {
          const end = i + 1 + m[0].length;
          return [line.slice(0, end), line.slice(end).trim()];
        }
      }
    }
    throw new TypeError(`${where}: unterminated regular expression`);
  }
  const m = /^(\S+)\s+(.+)$/.exec(line);
  if (!m) throw new TypeError(`${where}: expected "key action"`);
  return [m[1] as string, m[2] as string];
}

function toPairs(entries: AccessEntries, table: string): { key: string; value: string; where: string }[] {
  if (typeof entries === 'string') {
    return logicalLines(entries, table).map(({ text, line }) => {
      const where = `${table}: line ${line}`;
      const [key, value] = splitLine(text, where);
      return { key, value, where };
    });
  }
  if (Array.isArray(entries)) {
    return (entries as readonly (readonly [string, string])[]).map((pair, i) => {
      if (
        !Array.isArray(pair) ||
        pair.length !== 2 ||
        typeof pair[0] !== 'string' ||
        typeof pair[1] !== 'string'
      ) {
        throw new TypeError(`${table}: entry ${i + 1} must be a [key, action] pair of strings`);
      }
      return { key: pair[0], value: pair[1], where: `${table}: entry ${i + 1} "${pair[0]}"` };
    });
  }
  if (typeof entries === 'object' && entries !== null) {
    return Object.entries(entries).map(([key, value]) => {
      if (typeof value !== 'string') throw new TypeError(`${table}: entry "${key}" must map to a string`);
      return { key, value, where: `${table}: entry "${key}"` };
    });
  }
  throw new TypeError(`${table}: entries must be text, an object or [key, action] pairs`);
}

const STAGE: Record<AccessKey, Stage> = {
  client: 'connect',
  rdns: 'connect',
  helo: 'helo',
  sender: 'mail',
  recipient: 'rcpt',
};

const CLASS: Record<AccessKey, string> = {
  client: 'Client host',
  rdns: 'Client host',
  helo: 'Helo command',
  sender: 'Sender address',
  recipient: 'Recipient address',
};

/** The parents of a domain, nearest first: a.b.example.com -> b.example.com, example.com, com. */
function* parents(domain: string): Generator<string> {
  let i = domain.indexOf('.');
  while (i >= 0 && i < domain.length - 1) {
    yield domain.slice(i + 1);
    i = domain.indexOf('.', i + 1);
  }
}

/** A match: the action, where it is written (for the evidence) and, for a regexp, its captures. */
interface Found {
  readonly result: Result;
  readonly where: string;
  readonly captures?: Captures;
}

/** A compiled table: one lookup a key, each giving the first match in Postfix's order. */
interface Lookups {
  client(s: Session): Found | undefined;
  rdns(s: Session): Found | undefined;
  helo(helo: string): Found | undefined;
  address(addr: string, isSender: boolean): Found | undefined;
}

/** The inline or `hash:`-style table: exact and domain keys, CIDRs, then regexps (JavaScript syntax). */
function compileEntries(entries: AccessEntries, key: AccessKey, source: string): Lookups {
  type E = { result: Result; where: string };
  const exact = new Map<string, E>();
  const dotted = new Map<string, E>();
  const nets: { range: ReturnType<typeof parseNetwork>; e: E }[] = [];
  const regexps: { re: RegExp; e: E }[] = [];
  const seen = new Set<string>();

  for (const { key: rawKey, value, where } of toPairs(entries, source)) {
    const k = rawKey.trim();
    if (k.length === 0) throw new TypeError(`${where}: empty key`);
    const result = parseAction(value, where);
    refuseRdnsOk(key, result, where);
    const e: E = { result, where: where.startsWith(`${source}: `) ? where.slice(source.length + 2) : where };
    if (k.startsWith('/')) {
      const m = /^\/(.*)\/([a-z]*)$/s.exec(k);
      if (!m) throw new TypeError(`${where}: bad regular expression ${k}`);
      const flags = m[2] as string;
      if (/[^iu]/.test(flags)) throw new TypeError(`${where}: regexp flags may be "i" and "u" only`);
      try {
        regexps.push({ re: new RegExp(m[1] as string, flags), e });
      } catch (err) {
        throw new TypeError(`${where}: ${(err as Error).message}`);
      }
      continue;
    }
    const lower = k.toLowerCase();
    if (seen.has(lower)) throw new TypeError(`${where}: duplicate key "${k}"`);
    seen.add(lower);
    if (key === 'client' || key === 'helo') {
      if (lower.includes('/')) {
        nets.push({ range: parseNetwork(lower, where), e });
        continue;
      }
      const ip = parseIp(lower.replace(/^\[(ipv6:)?|\]$/g, ''));
      if (ip) {
        exact.set(ip.address, e);
        continue;
      }
      if (key === 'client' && /^\d{1,3}(\.\d{1,3}){0,2}$/.test(lower)) {
        exact.set(lower, e);
        continue;
      }
      if (lower.includes(':') || lower.startsWith('['))
        throw new TypeError(`${where}: "${k}" is not an address`);
    }
    if (key === 'sender' || key === 'recipient') {
      if (lower === '<>') {
        if (key === 'recipient') throw new TypeError(`${where}: "<>" is the null sender, not a recipient`);
        exact.set('<>', e);
        continue;
      }
      const at = lower.lastIndexOf('@');
      if (at >= 0) {
        // user@domain or user@: exact keys.
        exact.set(
          at === lower.length - 1 ? lower : `${lower.slice(0, at)}@${stripRootDot(lower.slice(at + 1))}`,
          e,
        );
        continue;
      }
    }
    const domainKey = lower.startsWith('.') ? lower.slice(1) : lower;
    const n = normaliseName(domainKey);
    if (n === null || !isValidHostname(n)) {
      // HELO tables may name anything a client says (e.g. a bare word); others want host names.
      if (key !== 'helo' || /\s/.test(lower)) throw new TypeError(`${where}: "${k}" is not a valid key`);
      exact.set(lower, e);
      continue;
    }
    (lower.startsWith('.') ? dotted : exact).set(n, e);
  }

  const lookupDomain = (domain: string): E | undefined => {
    const r = exact.get(domain);
    if (r) return r;
    for (const p of parents(domain)) {
      const e = exact.get(p) ?? dotted.get(p);
      if (e) return e;
    }
    return undefined;
  };
  const lookupNet = (address: string): E | undefined => {
    if (nets.length === 0) return undefined;
    const p = parseIp(address);
    if (!p) return undefined;
    for (const n of nets) {
      const [net, bits] = n.range;
      if (net.kind() === p.ip.kind()) {
        if ((p.ip as typeof net).match(net as never, bits)) return n.e;
      } else if (p.family === 4 && net.kind() === 'ipv6') {
        if ((p.ip as import('ipaddr.js').IPv4).toIPv4MappedAddress().match(net as never, bits)) return n.e;
      }
    }
    return undefined;
  };
  const lookupRegex = (s: string): E | undefined => {
    if (regexps.length === 0 || s.length > MAX_REGEX_INPUT) return undefined;
    for (const r of regexps) if (r.re.test(s)) return r.e;
    return undefined;
  };
  const lookupAddressIp = (address: string): E | undefined => {
    const p = parseIp(address);
    if (!p) return undefined;
    const e = exact.get(p.address);
    if (e) return e;
    if (p.family === 4) {
      const parts = p.address.split('.');
      for (let i = 3; i >= 1; i--) {
        const r = exact.get(parts.slice(0, i).join('.'));
        if (r) return r;
      }
    }
    return lookupNet(address);
  };

  return {
    client(s) {
      const host = s.rdns?.verified;
      if (typeof host === 'string' && host.length > 0) {
        const n = normaliseName(host);
        const r = (n !== null ? lookupDomain(n) : undefined) ?? lookupRegex(host);
        if (r) return r;
      }
      return lookupAddressIp(s.clientAddress) ?? lookupRegex(s.clientAddress);
    },
    rdns(s) {
      const host = s.rdns?.names[0];
      if (typeof host !== 'string' || host.length === 0) return undefined;
      const n = normaliseName(host);
      return (n !== null ? lookupDomain(n) : undefined) ?? lookupRegex(host);
    },
    helo(helo) {
      const lower = stripRootDot(helo.toLowerCase());
      const lit = parseHeloLiteral(lower);
      const ip = lit ? (lit.valid ? lit.address : undefined) : parseIp(lower)?.address;
      if (lit || ip) {
        const r = exact.get(lower) ?? (ip !== undefined ? (exact.get(ip) ?? lookupNet(ip)) : undefined);
        return r ?? lookupRegex(helo);
      }
      const n = normaliseName(lower);
      return (n !== null ? lookupDomain(n) : exact.get(lower)) ?? lookupRegex(helo);
    },
    address(addr, isSender) {
      if (addr === '') return isSender ? (exact.get('<>') ?? lookupRegex('<>')) : undefined;
      const lower = addr.toLowerCase();
      const at = lower.lastIndexOf('@');
      if (at < 0) return exact.get(lower) ?? lookupRegex(addr);
      const local = lower.slice(0, at);
      const domain = stripRootDot(lower.slice(at + 1));
      const full = exact.get(`${local}@${domain}`);
      if (full) return full;
      const n = domain.startsWith('[') ? null : normaliseName(domain);
      const d = n !== null ? lookupDomain(n) : exact.get(domain);
      if (d) return d;
      return exact.get(`${local}@`) ?? lookupRegex(addr);
    },
  };
}

function refuseRdnsOk(key: AccessKey, result: Result, where: string): void {
  if (key === 'rdns' && result.kind === 'accept') {
    throw new TypeError(
      `${where}: OK in an rdns table would let the owner of a PTR record in; use a client table`,
    );
  }
}

/**
 * A `regexp:`, `pcre:` or `cidr:` table, as Postfix queries one: pattern tables see only the whole
 * string (no parent domains, no truncated addresses): for `client` the verified name, then the
 * address; for `rdns` the PTR name; for `helo` the HELO argument; for `sender` the address or `<>`
 * (smtpd_null_access_lookup_key); for `recipient` the address. A cidr table sees addresses only.
 */
function compilePatterns(table: PatternTable<Result>): Lookups {
  const cidr = table.type === 'cidr';
  const look = (s: string | undefined | null): Found | undefined => {
    if (typeof s !== 'string' || s.length === 0 || s.length > MAX_REGEX_INPUT) return undefined;
    const m = matchPatternTable(table, s);
    return m ? { result: m.value, where: `line ${m.line}`, captures: m.captures } : undefined;
  };
  return {
    client: (s) => (cidr ? undefined : look(s.rdns?.verified)) ?? look(s.clientAddress),
    rdns: (s) => (cidr ? undefined : look(s.rdns?.names[0])),
    helo(helo) {
      if (!cidr) return look(helo);
      const lit = parseHeloLiteral(helo);
      return look(lit ? (lit.valid ? lit.address : undefined) : parseIp(helo)?.address);
    },
    address: (addr, isSender) => (cidr ? undefined : look(addr === '' ? (isSender ? '<>' : '') : addr)),
  };
}

/** Parses table text of a given type for an access check (errors name `source` and the line). */
function compileText(type: TableType, text: string, key: AccessKey, source: string): Lookups {
  if (type === 'hash') return compileEntries(text, key, source);
  if (type === 'sqlgrey')
    throw new TypeError(`${source}: a sqlgrey pattern list has no actions; use it with rdns-dynamic`);
  if (type === 'cidr' && key !== 'client' && key !== 'helo')
    throw new TypeError(`${source}: a cidr table looks up addresses: use it for client or helo`);
  const table = parsePatternTable(type, text, source, (rhs, where) => {
    if (rhs === '') throw new TypeError(`${where}: expected an action after the pattern`);
    const r = parseAction(rhs, where);
    refuseRdnsOk(key, r, where);
    return r;
  });
  return compilePatterns(table);
}

/**
 * An access table as a check, with Postfix access(5) semantics:
 * - inline `entries` keys: exact strings; domains (`example.com` matches itself and its
 *   subdomains, as with parent_domain_matches_subdomains, Postfix's default; `.example.com` matches
 *   subdomains only); for `client` and `helo`, addresses, CIDRs (IPv4 and IPv6) and, for `client`,
 *   Postfix's truncated IPv4 forms (`192.0.2`, `192.0`, `192`); for `sender`/`recipient`,
 *   `user@domain`, `domain`, `user@`, and `<>` for the null sender; `/regexp/flags` (JavaScript
 *   syntax, flags `i` and `u`) everywhere.
 * - or a `table` file in Postfix's own format (`regexp:`, `pcre:`, `cidr:`, `hash:` source text),
 *   with Postfix's semantics for that type (see `compilePatterns`), followed on disk.
 * - actions: OK (or RELAY, accept), REJECT [text] (554 5.7.1), DEFER [text] (450 4.7.1),
 *   DEFER_IF_PERMIT [text], DUNNO (stop this table: no parent domain or shorter network is tried),
 *   WARN [text] (log, go on), `4xx text`, `5xx text`; text may begin with an enhanced status code.
 *   And two that feed a greylister or a score, where Postfix would name a restriction class:
 *   GREYLIST [delay] [text] (no verdict; a doubt the selective greylist acts on, optionally asking
 *   for a longer delay: `GREYLIST 15m`) and SCORE points [text] (no verdict; points for weigh()).
 * - lookup order, as Postfix: for each looked-up string in turn (client: the verified host name, then
 *   the address; sender/recipient: the address), exact and domain keys in access(5) order (full
 *   address, domain, parent domains, `user@`; address, then its truncated forms), then CIDRs in table
 *   order, then regexps in table order. The first match decides.
 * - `rdns` looks up the first PTR name, which the client's owner controls: OK is refused there (use
 *   `client`, which matches the forward-confirmed name).
 * Bad entries throw TypeError at construction, naming the file or check and the line or entry.
 * The evidence of a match names where it is written: `client-access: /etc/postfix/x line 12`.
 */
export function accessTable(
  options: AccessTableOptions,
  env?: TableEnv,
): Check & {
  /** Re-reads the table file now, when the table came from a file (`path`). */
  reload?: TableFile<unknown>['reload'];
} {
  if (typeof options !== 'object' || options === null) throw new TypeError('accessTable: options required');
  const key = options.key;
  if (!(key in STAGE))
    throw new TypeError(`accessTable: key must be one of ${Object.keys(STAGE).join(', ')}`);
  const name = options.name ?? `${key}-access`;
  if (typeof name !== 'string' || name.length === 0)
    throw new TypeError('accessTable: name must be a string');
  const hasEntries = options.entries !== undefined;
  const hasTable = options.table !== undefined;
  if (hasEntries === hasTable)
    throw new TypeError(`${name}: give either entries or table, not ${hasEntries ? 'both' : 'neither'}`);

  let current: () => Lookups;
  let file: TableFile<Lookups> | undefined;
  if (hasTable) {
    const ref = parseTableRef(options.table, name);
    if (!env)
      throw new TypeError(`${name}: a table file needs a file system; build the check with a TableEnv`);
    file = tableFile(ref.path, (text, path) => compileText(ref.type, text, key, path), env);
    const f = file;
    current = () => f.get();
  } else {
    const compiled = compileEntries(options.entries as AccessEntries, key, name);
    current = () => compiled;
  }

  const cls = CLASS[key];
  const toVerdict = (f: Found | undefined, shown: string, looked: string): Verdict => {
    if (!f) return next();
    const r = f.result;
    const where = file ? `${file.path} ${f.where}` : f.where;
    const why = `${looked} matched in ${name} (${where})`;
    const text = (t: string) => oneLine(f.captures ? substitute(t, f.captures) : t);
    switch (r.kind) {
      case 'accept':
        return accept(why);
      case 'dunno':
        return next(`${why}: DUNNO`);
      case 'warn':
        return next(`${why}: WARN ${text(r.text)}`);
      case 'doubt': {
        const finding: Finding = {
          check: name,
          tag: r.delay !== undefined ? `table:delay=${r.delay}` : 'table',
          doubt: true,
        };
        return next(
          `${why}: GREYLIST${r.delay !== undefined ? ` ${r.delay}s` : ''} ${text(r.text)}`.trimEnd(),
          [finding],
        );
      }
      case 'score':
        return next(`${why}: SCORE ${r.score} ${text(r.text)}`.trimEnd(), [
          { check: name, tag: 'table', score: r.score },
        ]);
      default: {
        const dflt = r.ifPermit ? 'Service unavailable' : 'Access denied';
        const rep = reply(r.code, r.enhanced, `<${shown}>: ${cls} rejected: ${text(r.text) || dflt}`);
        return r.kind === 'reject' ? reject(rep, why) : defer(rep, why, r.ifPermit);
      }
    }
  };

  const check: Check & { reload?: TableFile<unknown>['reload'] } = {
    name,
    stage: STAGE[key],
    run(session) {
      const t = current();
      switch (key) {
        case 'client': {
          const shown = `${oneLine(session.rdns?.verified ?? 'unknown')}[${oneLine(session.clientAddress)}]`;
          return toVerdict(t.client(session), shown, `client ${shown}`);
        }
        case 'rdns': {
          const shown = `${oneLine(session.rdns?.names[0] ?? 'unknown')}[${oneLine(session.clientAddress)}]`;
          return toVerdict(t.rdns(session), shown, `reverse name ${shown}`);
        }
        case 'helo': {
          const h = session.helo;
          if (typeof h !== 'string' || h.length === 0) return next('no HELO');
          return toVerdict(t.helo(h), showHelo(h), `HELO ${showHelo(h)}`);
        }
        case 'sender': {
          const a = session.mailFrom;
          if (typeof a !== 'string') return next('no sender');
          return toVerdict(t.address(a, true), showAddress(a), `sender <${showAddress(a)}>`);
        }
        case 'recipient': {
          const a = session.rcptTo;
          if (typeof a !== 'string') return next('no recipient');
          return toVerdict(t.address(a, false), showAddress(a), `recipient <${showAddress(a)}>`);
        }
      }
    },
  };
  if (file) check.reload = file.reload;
  return check;
}
