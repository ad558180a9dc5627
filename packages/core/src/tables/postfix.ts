/**
 * Postfix lookup tables in their own text formats, parsed without I/O: `regexp:` (regexp_table(5)),
 * `pcre:` (pcre_table(5)), `cidr:` (cidr_table(5)), the `key value` source of `hash:`/`lmdb:`/
 * `cdb:`/`btree:`/`texthash:` tables, and sqlgrey's one-regexp-a-line `dyn_fqdn.regexp`.
 * See docs/checks/access.md. Every error names the table and the line.
 */
import type ipaddr from 'ipaddr.js';
import { parseIp, parseNetwork } from '../checks/names.js';

/** The table types a file or inline text may be written in. */
export type TableType = 'regexp' | 'pcre' | 'cidr' | 'hash' | 'sqlgrey';

/**
 * Postfix map types whose source file is `key value` lines: the text a user runs `postmap` on.
 * mxguard reads that source, never the compiled `.db`/`.lmdb`/`.cdb`.
 */
const HASH_LIKE = new Set(['hash', 'btree', 'lmdb', 'cdb', 'dbm', 'sdbm', 'texthash']);

/** A table reference from a config: `pcre:/etc/postfix/dynamic_pools`. */
export interface TableRef {
  /** The table's type, such as `pcre` or `cidr`. */
  readonly type: TableType;
  /** Its absolute path. */
  readonly path: string;
}

/**
 * Reads `type:/absolute/path`. Throws TypeError on an unknown type or a relative path (a path
 * relative to whatever directory the daemon was started in does not say what its author meant).
 */
export function parseTableRef(ref: unknown, what: string): TableRef {
  if (typeof ref !== 'string')
    throw new TypeError(`${what}: a table is written "type:/path", got ${typeof ref}`);
  const m = /^([a-z]+):(.+)$/.exec(ref.trim());
  if (!m)
    throw new TypeError(`${what}: "${ref}" is not "type:/path" (e.g. "pcre:/etc/postfix/dynamic_pools")`);
  const rawType = m[1] as string;
  const path = m[2] as string;
  const type: TableType | undefined = HASH_LIKE.has(rawType)
    ? 'hash'
    : rawType === 'regexp' || rawType === 'pcre' || rawType === 'cidr' || rawType === 'sqlgrey'
      ? rawType
      : undefined;
  if (!type) {
    throw new TypeError(
      `${what}: table type "${rawType}" is not one of regexp, pcre, cidr, sqlgrey, hash (or btree, lmdb, cdb, texthash: their source text)`,
    );
  }
  if (!path.startsWith('/')) throw new TypeError(`${what}: table path "${path}" must be absolute`);
  return { type, path };
}

/** One logical line of a table: text, 1-based line number of its first physical line. */
export interface TableLine {
  /** The text, continuation lines joined. */
  readonly text: string;
  /** The 1-based number of its first physical line. */
  readonly line: number;
}

/**
 * Splits table text into logical lines, as Postfix's readllines(): `#` comment lines and blank lines
 * are skipped, a line that starts with white space continues the previous logical line.
 */
export function logicalLines(text: string, source: string): TableLine[] {
  const out: { text: string; line: number }[] = [];
  const lines = text.split(/\r?\n/);
  lines.forEach((raw, i) => {
    if (/^\s*(#|$)/.test(raw)) return;
    if (/^\s/.test(raw)) {
      const last = out[out.length - 1];
      if (!last) throw new TypeError(`${source}: line ${i + 1}: continuation line without an entry`);
      last.text += ` ${raw.trim()}`;
      return;
    }
    out.push({ text: raw.trim(), line: i + 1 });
  });
  return out;
}

/** What matched: the captures of a regexp (index 0 the whole match), empty for a CIDR. */
export type Captures = readonly (string | undefined)[];

/** A compiled left-hand side. */
export interface Matcher {
  /** The captures when `s` matches, else null. */
  match(s: string): Captures | null;
}

/** A rule or an `if` block of a pattern table. */
export type PatternNode<V> =
  | {
      /** A rule: pattern and result. */
      readonly kind: 'rule';
      /** The pattern. */
      readonly matcher: Matcher;
      /** `!/pattern/`: the rule matches what the pattern does not. */
      readonly negate: boolean;
      /** The result when it matches. */
      readonly value: V;
      /** Its line in the file. */
      readonly line: number;
    }
  | {
      /** An `if /pattern/` ... `endif` block. */
      readonly kind: 'if';
      /** The pattern. */
      readonly matcher: Matcher;
      /** `if !/pattern/`: the block applies when the pattern does not match. */
      readonly negate: boolean;
      /** The `if` line in the file. */
      readonly line: number;
      /** The rules and blocks inside. */
      readonly body: readonly PatternNode<V>[];
    };

/** A parsed pattern table (regexp, pcre, cidr, sqlgrey): rules in file order, `if` blocks nested. */
export interface PatternTable<V> {
  /** The table type it was parsed as. */
  readonly type: 'regexp' | 'pcre' | 'cidr' | 'sqlgrey';
  /** Where it came from (the file path), for evidence and errors. */
  readonly source: string;
  /** The rules and `if` blocks, in file order. */
  readonly nodes: readonly PatternNode<V>[];
  /** Number of rules (not counting `if` lines). */
  readonly rules: number;
}

/** A match of a pattern table. */
export interface PatternMatch<V> {
  /** The result of the rule that matched. */
  readonly value: V;
  /** The rule's line in the file. */
  readonly line: number;
  /** The pattern's captures, for `$1` in the result. */
  readonly captures: Captures;
}

/** Postfix's `[[:class:]]` names, as JavaScript class contents (they only occur inside brackets). */
const POSIX_CLASSES: Record<string, string> = {
  alpha: 'a-zA-Z',
  digit: '0-9',
  alnum: 'a-zA-Z0-9',
  upper: 'A-Z',
  lower: 'a-z',
  space: '\\s',
  blank: ' \\t',
  xdigit: '0-9A-Fa-f',
  punct: '!-\\/:-@\\[-`{-~',
  word: '\\w',
  cntrl: '\\x00-\\x1f\\x7f',
  print: '\\x20-\\x7e',
  graph: '\\x21-\\x7e',
};

/** Removes PCRE extended-mode white space and `#` comments outside character classes. */
function stripExtended(body: string): string {
  let out = '';
  let inClass = false;
  for (let i = 0; i < body.length; i++) {
    const c = body[i] as string;
    if (c === '\\') {
      out += c + (body[i + 1] ?? '');
      i++;
      continue;
    }
    if (inClass) {
      if (c === ']') inClass = false;
      out += c;
      continue;
    }
    if (c === '[') {
      inClass = true;
      out += c;
      if (body[i + 1] === ']') {
        out += ']';
        i++;
      }
      continue;
    }
    if (/\s/.test(c)) continue;
    if (c === '#') break;
    out += c;
  }
  return out;
}

/**
 * Compiles a Postfix pattern to a JavaScript RegExp. Both table types match case-insensitively
 * unless the `i` flag toggles it off, as Postfix does. regexp flags: i, m (x, which turns POSIX
 * extended syntax off, is refused). pcre flags: i, m, s, x (PCRE_EXTENDED), A (anchored), E and X
 * (accepted, no effect in JavaScript); U (ungreedy) is refused. POSIX classes (`[[:digit:]]`) and
 * PCRE's `\A`, `\z`, `\Z` are translated; other PCRE-only syntax (inline flags, atomic groups,
 * possessive quantifiers) fails to compile and is reported with the line.
 */
export function compilePattern(body: string, flags: string, type: 'regexp' | 'pcre', where: string): RegExp {
  let icase = true;
  let multi = false;
  let dotall = false;
  let extended = false;
  let anchored = false;
  for (const f of flags) {
    if (f === 'i') icase = !icase;
    else if (f === 'm') multi = !multi;
    else if (type === 'regexp' && f === 'x')
      throw new TypeError(`${where}: flag "x" (POSIX basic syntax) is not supported; drop it`);
    else if (type === 'pcre' && f === 's') dotall = !dotall;
    else if (type === 'pcre' && f === 'x') extended = !extended;
    else if (type === 'pcre' && f === 'A') anchored = true;
    else if (type === 'pcre' && (f === 'E' || f === 'X')) {
      // PCRE_DOLLAR_ENDONLY is JavaScript's `$` already; PCRE_EXTRA only makes PCRE stricter.
    } else if (type === 'pcre' && f === 'U')
      throw new TypeError(`${where}: flag "U" (ungreedy) is not supported; write lazy quantifiers`);
    else throw new TypeError(`${where}: unknown ${type} flag "${f}"`);
  }
  let src = extended ? stripExtended(body) : body;
  src = src.replace(/\[:([a-z]+):\]/g, (all, name: string) => {
    const c = POSIX_CLASSES[name];
    if (c === undefined) throw new TypeError(`${where}: unknown character class ${all}`);
    return c;
  });
  src = src.replace(/\\(\\|A|z|Z)/g, (all, c: string) => (c === '\\' ? all : c === 'A' ? '^' : '$'));
  if (anchored) src = `^(?:${src})`;
  try {
    return new RegExp(src, `${icase ? 'i' : ''}${multi ? 'm' : ''}${dotall ? 's' : ''}`);
  } catch (e) {
    throw new TypeError(`${where}: ${(e as Error).message}`);
  }
}

/**
 * Splits `/pattern/flags rest` (any delimiter that is not a letter, digit or white space, as
 * Postfix's regexp tables allow). Returns the pattern, its flags and the rest of the line.
 */
function splitPattern(text: string, where: string): { body: string; flags: string; rest: string } {
  const delim = text[0] as string;
  if (/[\sA-Za-z0-9\\]/.test(delim))
    throw new TypeError(`${where}: a pattern starts with a delimiter such as "/"`);
  for (let i = 1; i < text.length; i++) {
    if (text[i] === '\\') {
      i++;
      continue;
    }
    if (text[i] === delim) {
      const m = /^[A-Za-z]*/.exec(text.slice(i + 1)) as RegExpExecArray;
      const end = i + 1 + m[0].length;
      if (end < text.length && !/\s/.test(text[end] as string))
        throw new TypeError(`${where}: expected white space after ${text.slice(0, end)}`);
      return { body: text.slice(1, i), flags: m[0], rest: text.slice(end).trim() };
    }
  }
  throw new TypeError(`${where}: unterminated pattern (no closing "${delim}")`);
}

function regexMatcher(re: RegExp): Matcher {
  return { match: (s) => re.exec(s) };
}

/** A CIDR left-hand side as cidr_table(5): `192.0.2.0/24`, `2001:db8::/32`, or one address. */
function cidrMatcher(text: string, where: string): Matcher {
  const [net, bits] = parseNetwork(text, where);
  return {
    match(s) {
      const p = parseIp(s);
      if (!p) return null;
      if (p.ip.kind() === net.kind())
        return (p.ip as ipaddr.IPv4).match(net as ipaddr.IPv4, bits) ? [] : null;
      if (p.family === 4 && net.kind() === 'ipv6')
        return (p.ip as ipaddr.IPv4).toIPv4MappedAddress().match(net as ipaddr.IPv6, bits) ? [] : null;
      return null;
    },
  };
}

/**
 * Parses a pattern table. `parseValue(text, where)` reads a right-hand side (it may throw a
 * TypeError naming `where`, or accept an empty one). Postfix's `if`/`endif` blocks nest; `!`
 * negates a pattern. A sqlgrey table is one regexp a line, case-insensitive, without delimiters
 * and without a right-hand side (its value is `parseValue('')`).
 */
export function parsePatternTable<V>(
  type: 'regexp' | 'pcre' | 'cidr' | 'sqlgrey',
  text: string,
  source: string,
  parseValue: (text: string, where: string) => V,
): PatternTable<V> {
  const root: PatternNode<V>[] = [];
  const stack: { body: PatternNode<V>[]; line: number }[] = [];
  let rules = 0;
  const into = () => (stack.length > 0 ? (stack[stack.length - 1] as { body: PatternNode<V>[] }).body : root);
  for (const { text: t, line } of logicalLines(text, source)) {
    const where = `${source}: line ${line}`;
    if (type === 'sqlgrey') {
      let re: RegExp;
      try {
        re = compilePattern(t, '', 'pcre', where);
      } catch (e) {
        throw new TypeError((e as Error).message);
      }
      into().push({
        kind: 'rule',
        matcher: regexMatcher(re),
        negate: false,
        value: parseValue('', where),
        line,
      });
      rules++;
      continue;
    }
    if (/^endif\b/i.test(t)) {
      if (t.toLowerCase() !== 'endif') throw new TypeError(`${where}: text after "endif"`);
      if (!stack.pop()) throw new TypeError(`${where}: "endif" without "if"`);
      continue;
    }
    const isIf = /^if\s/i.test(t);
    let rest = isIf ? t.slice(2).trim() : t;
    const negate = rest.startsWith('!');
    if (negate) rest = rest.slice(1).trimStart();
    let matcher: Matcher;
    let rhs: string;
    if (type === 'cidr') {
      const m = /^(\S+)\s*(.*)$/.exec(rest) as RegExpExecArray;
      matcher = cidrMatcher(m[1] as string, where);
      rhs = (m[2] as string).trim();
    } else {
      const p = splitPattern(rest, where);
      matcher = regexMatcher(compilePattern(p.body, p.flags, type, where));
      rhs = p.rest;
    }
    if (isIf) {
      if (rhs !== '') throw new TypeError(`${where}: "if" takes a pattern and nothing else`);
      const node = { kind: 'if' as const, matcher, negate, line, body: [] as PatternNode<V>[] };
      into().push(node);
      stack.push({ body: node.body, line });
      continue;
    }
    if (negate && /\$(\d|\{\d)/.test(rhs))
      throw new TypeError(`${where}: a negated pattern has no $number to substitute`);
    into().push({ kind: 'rule', matcher, negate, value: parseValue(rhs, where), line });
    rules++;
  }
  const open = stack[stack.length - 1];
  if (open) throw new TypeError(`${source}: line ${open.line}: "if" without "endif"`);
  return { type, source, nodes: root, rules };
}

/** The first rule matching `s`, in table order, entering `if` blocks whose condition holds. */
export function matchPatternTable<V>(table: PatternTable<V>, s: string): PatternMatch<V> | undefined {
  const walk = (nodes: readonly PatternNode<V>[]): PatternMatch<V> | undefined => {
    for (const n of nodes) {
      const m = n.matcher.match(s);
      const hit = n.negate ? m === null : m !== null;
      if (!hit) continue;
      if (n.kind === 'rule') return { value: n.value, line: n.line, captures: m ?? [] };
      const r = walk(n.body);
      if (r) return r;
    }
    return undefined;
  };
  return walk(table.nodes);
}

/** Postfix's `$number` and `${number}` substitution in a result, `$$` for a dollar. */
export function substitute(text: string, captures: Captures): string {
  if (!text.includes('$')) return text;
  return text.replace(/\$(\$|\d|\{(\d+)\})/g, (_all, a: string, b: string | undefined) => {
    if (a === '$') return '$';
    return captures[Number(b ?? a)] ?? '';
  });
}
