/**
 * Access tables, as Postfix's check_client_access, check_reverse_client_hostname_access,
 * check_helo_access, check_sender_access and check_recipient_access with access(5) semantics.
 * See docs/checks/access.md.
 */
import type { Check, Session, Stage, Verdict } from '../model.js';
import { accept, defer, next, reject, reply } from '../reply.js';
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

/** Options of {@link accessTable}. */
export interface AccessTableOptions {
  /** Check name (config key and trace label). @default `${key}-access` */
  readonly name?: string;
  /** What is looked up. */
  readonly key: AccessKey;
  readonly entries: AccessEntries;
}

type Result =
  | { readonly kind: 'accept' }
  | { readonly kind: 'dunno' }
  | { readonly kind: 'warn'; readonly text: string }
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
    `${where}: action "${value}" is not one of OK, REJECT [text], DEFER [text], DEFER_IF_PERMIT [text], DUNNO, WARN [text], 4xx text, 5xx text`,
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
    const out: { key: string; value: string; where: string }[] = [];
    const lines = entries.split(/\r?\n/);
    let current: { text: string; line: number } | undefined;
    const flush = () => {
      if (!current) return;
      const where = `${table}: line ${current.line}`;
      const [key, value] = splitLine(current.text, where);
      out.push({ key, value, where });
      current = undefined;
    };
    lines.forEach((raw, i) => {
      if (/^\s*(#|$)/.test(raw)) return;
      if (/^\s/.test(raw)) {
        if (!current) throw new TypeError(`${table}: line ${i + 1}: continuation line without an entry`);
        current.text += ` ${raw.trim()}`;
        return;
      }
      flush();
      current = { text: raw.trim(), line: i + 1 };
    });
    flush();
    return out;
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

/**
 * An access table as a check, with Postfix access(5) semantics:
 * - keys: exact strings; domains (`example.com` matches itself and its subdomains, as with
 *   parent_domain_matches_subdomains, Postfix's default; `.example.com` matches subdomains only);
 *   for `client` and `helo`, addresses, CIDRs (IPv4 and IPv6) and, for `client`, Postfix's
 *   truncated IPv4 forms (`192.0.2`, `192.0`, `192`); for `sender`/`recipient`, `user@domain`,
 *   `domain`, `user@`, and `<>` for the null sender; `/regexp/flags` (JavaScript syntax, flags `i`
 *   and `u`) everywhere.
 * - actions: OK (or RELAY, accept), REJECT [text] (554 5.7.1), DEFER [text] (450 4.7.1),
 *   DEFER_IF_PERMIT [text], DUNNO (stop this table: no parent domain or shorter network is tried),
 *   WARN [text] (log, go on), `4xx text`, `5xx text`; text may begin with an enhanced status code.
 * - lookup order, as Postfix: for each looked-up string in turn (client: the verified host name, then
 *   the address; sender/recipient: the address), exact and domain keys in access(5) order (full
 *   address, domain, parent domains, `user@`; address, then its truncated forms), then CIDRs in table
 *   order, then regexps in table order. The first match decides.
 * - `rdns` looks up the first PTR name, which the client's owner controls: OK is refused there (use
 *   `client`, which matches the forward-confirmed name).
 * Bad entries throw TypeError at construction, naming the line or entry.
 */
export function accessTable(options: AccessTableOptions): Check {
  if (typeof options !== 'object' || options === null) throw new TypeError('accessTable: options required');
  const key = options.key;
  if (!(key in STAGE))
    throw new TypeError(`accessTable: key must be one of ${Object.keys(STAGE).join(', ')}`);
  const name = options.name ?? `${key}-access`;
  if (typeof name !== 'string' || name.length === 0)
    throw new TypeError('accessTable: name must be a string');
  const exact = new Map<string, Result>();
  const dotted = new Map<string, Result>();
  const nets: { range: ReturnType<typeof parseNetwork>; result: Result; key: string }[] = [];
  const regexps: { re: RegExp; result: Result; key: string }[] = [];
  const seen = new Set<string>();

  for (const { key: rawKey, value, where } of toPairs(options.entries, name)) {
    const k = rawKey.trim();
    if (k.length === 0) throw new TypeError(`${where}: empty key`);
    const result = parseAction(value, where);
    if (key === 'rdns' && result.kind === 'accept') {
      throw new TypeError(
        `${where}: OK in an rdns table would let the owner of a PTR record in; use a client table`,
      );
    }
    if (k.startsWith('/')) {
      const m = /^\/(.*)\/([a-z]*)$/s.exec(k);
      if (!m) throw new TypeError(`${where}: bad regular expression ${k}`);
      const flags = m[2] as string;
      if (/[^iu]/.test(flags)) throw new TypeError(`${where}: regexp flags may be "i" and "u" only`);
      try {
        regexps.push({ re: new RegExp(m[1] as string, flags), result, key: k });
      } catch (e) {
        throw new TypeError(`${where}: ${(e as Error).message}`);
      }
      continue;
    }
    const lower = k.toLowerCase();
    if (seen.has(lower)) throw new TypeError(`${where}: duplicate key "${k}"`);
    seen.add(lower);
    if (key === 'client' || key === 'helo') {
      if (lower.includes('/')) {
        nets.push({ range: parseNetwork(lower, where), result, key: k });
        continue;
      }
      const ip = parseIp(lower.replace(/^\[(ipv6:)?|\]$/g, ''));
      if (ip) {
        exact.set(ip.address, result);
        continue;
      }
      if (key === 'client' && /^\d{1,3}(\.\d{1,3}){0,2}$/.test(lower)) {
        exact.set(lower, result);
        continue;
      }
      if (lower.includes(':') || lower.startsWith('['))
        throw new TypeError(`${where}: "${k}" is not an address`);
    }
    if (key === 'sender' || key === 'recipient') {
      if (lower === '<>') {
        if (key === 'recipient') throw new TypeError(`${where}: "<>" is the null sender, not a recipient`);
        exact.set('<>', result);
        continue;
      }
      const at = lower.lastIndexOf('@');
      if (at >= 0) {
        // user@domain or user@: exact keys.
        exact.set(
          at === lower.length - 1 ? lower : `${lower.slice(0, at)}@${stripRootDot(lower.slice(at + 1))}`,
          result,
        );
        continue;
      }
    }
    const domainKey = lower.startsWith('.') ? lower.slice(1) : lower;
    const n = normaliseName(domainKey);
    if (n === null || !isValidHostname(n)) {
      // HELO tables may name anything a client says (e.g. a bare word); others want host names.
      if (key !== 'helo' || /\s/.test(lower)) throw new TypeError(`${where}: "${k}" is not a valid key`);
      exact.set(lower, result);
      continue;
    }
    (lower.startsWith('.') ? dotted : exact).set(n, result);
  }

  const lookupDomain = (domain: string): Result | undefined => {
    const r = exact.get(domain);
    if (r) return r;
    for (const p of parents(domain)) {
      const e = exact.get(p) ?? dotted.get(p);
      if (e) return e;
    }
    return undefined;
  };
  const lookupNet = (address: string): Result | undefined => {
    if (nets.length === 0) return undefined;
    const p = parseIp(address);
    if (!p) return undefined;
    for (const n of nets) {
      const [net, bits] = n.range;
      if (net.kind() === p.ip.kind()) {
        if ((p.ip as typeof net).match(net as never, bits)) return n.result;
      } else if (p.family === 4 && net.kind() === 'ipv6') {
        if ((p.ip as import('ipaddr.js').IPv4).toIPv4MappedAddress().match(net as never, bits))
          return n.result;
      }
    }
    return undefined;
  };
  const lookupRegex = (s: string): Result | undefined => {
    if (regexps.length === 0 || s.length > MAX_REGEX_INPUT) return undefined;
    for (const r of regexps) if (r.re.test(s)) return r.result;
    return undefined;
  };
  const lookupAddressIp = (address: string): Result | undefined => {
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

  const findClient = (s: Session): Result | undefined => {
    const host = s.rdns?.verified;
    if (typeof host === 'string' && host.length > 0) {
      const n = normaliseName(host);
      const r = (n !== null ? lookupDomain(n) : undefined) ?? lookupRegex(host);
      if (r) return r;
    }
    return lookupAddressIp(s.clientAddress) ?? lookupRegex(s.clientAddress);
  };
  const findRdns = (s: Session): Result | undefined => {
    const host = s.rdns?.names[0];
    if (typeof host !== 'string' || host.length === 0) return undefined;
    const n = normaliseName(host);
    return (n !== null ? lookupDomain(n) : undefined) ?? lookupRegex(host);
  };
  const findHelo = (helo: string): Result | undefined => {
    const lower = stripRootDot(helo.toLowerCase());
    const lit = parseHeloLiteral(lower);
    const ip = lit ? (lit.valid ? lit.address : undefined) : parseIp(lower)?.address;
    if (lit || ip) {
      const r = exact.get(lower) ?? (ip !== undefined ? (exact.get(ip) ?? lookupNet(ip)) : undefined);
      return r ?? lookupRegex(helo);
    }
    const n = normaliseName(lower);
    return (n !== null ? lookupDomain(n) : exact.get(lower)) ?? lookupRegex(helo);
  };
  const findAddress = (addr: string, isSender: boolean): Result | undefined => {
    if (addr === '') return isSender ? (exact.get('<>') ?? lookupRegex('<>')) : undefined;
    const lower = addr.toLowerCase();
    const at = lower.lastIndexOf('@');
    if (at < 0) return exact.get(lower) ?? lookupRegex(addr);
    const local = lower.slice(0, at);
    const rawDomain = lower.slice(at + 1);
    const domain = stripRootDot(rawDomain);
    const full = exact.get(`${local}@${domain}`);
    if (full) return full;
    const n = domain.startsWith('[') ? null : normaliseName(domain);
    const d = n !== null ? lookupDomain(n) : exact.get(domain);
    if (d) return d;
    return exact.get(`${local}@`) ?? lookupRegex(addr);
  };

  const table = name;
  const cls = CLASS[key];
  const toVerdict = (r: Result | undefined, shown: string, looked: string): Verdict => {
    if (!r) return next();
    const why = `${looked} matched in ${table}`;
    switch (r.kind) {
      case 'accept':
        return accept(why);
      case 'dunno':
        return next(`${why}: DUNNO`);
      case 'warn':
        return next(`${why}: WARN ${oneLine(r.text)}`);
      default: {
        const dflt = r.ifPermit ? 'Service unavailable' : 'Access denied';
        const rep = reply(r.code, r.enhanced, `<${shown}>: ${cls} rejected: ${oneLine(r.text) || dflt}`);
        return r.kind === 'reject' ? reject(rep, why) : defer(rep, why, r.ifPermit);
      }
    }
  };

  return {
    name,
    stage: STAGE[key],
    run(session) {
      switch (key) {
        case 'client': {
          const shown = `${oneLine(session.rdns?.verified ?? 'unknown')}[${oneLine(session.clientAddress)}]`;
          return toVerdict(findClient(session), shown, `client ${shown}`);
        }
        case 'rdns': {
          const shown = `${oneLine(session.rdns?.names[0] ?? 'unknown')}[${oneLine(session.clientAddress)}]`;
          return toVerdict(findRdns(session), shown, `reverse name ${shown}`);
        }
        case 'helo': {
          const h = session.helo;
          if (typeof h !== 'string' || h.length === 0) return next('no HELO');
          return toVerdict(findHelo(h), showHelo(h), `HELO ${showHelo(h)}`);
        }
        case 'sender': {
          const a = session.mailFrom;
          if (typeof a !== 'string') return next('no sender');
          return toVerdict(findAddress(a, true), showAddress(a), `sender <${showAddress(a)}>`);
        }
        case 'recipient': {
          const a = session.rcptTo;
          if (typeof a !== 'string') return next('no recipient');
          return toVerdict(findAddress(a, false), showAddress(a), `recipient <${showAddress(a)}>`);
        }
      }
    },
  };
}
