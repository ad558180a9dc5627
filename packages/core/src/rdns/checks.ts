/**
 * The two reverse-DNS checks: `rdns-dynamic` (the client's PTR looks like a dynamic pool) and
 * `rdns-missing` (the client has no PTR at all, as Postfix's reject_unknown_reverse_client_hostname).
 * Both default to `defer`: a dynamic-looking or missing name is doubt, not proof (DESIGN principle 1),
 * and the small honest sender on a home line deserves a delay it can read, not a ban (principle 6).
 */
import { commonOptions } from '../checks/names.js';
import { clientIp } from '../memo.js';
import type { Check, Session, Verdict } from '../model.js';
import type { HitAction } from '../reply.js';
import { hit, next, reply } from '../reply.js';
import { checkOptions, stringList, withOptions, z } from '../schema.js';
import type { CheckFactory, CommonCheckOptions, Site } from '../site.js';
import { type TableEnv, type TableFile, tableFile } from '../tables/file.js';
import { matchPatternTable, type PatternTable, parsePatternTable, parseTableRef } from '../tables/postfix.js';
import { classifyPtr } from './classify.js';

/** Options of `rdns-dynamic`. */
export interface RdnsDynamicOptions extends CommonCheckOptions {
  /**
   * What a dynamic-looking name does. `reject` answers 550 5.7.1, `defer` 450 4.7.1; `greylist`
   * and `score` leave a finding (tag `dynamic`) for the selective greylist or `weigh()`.
   * @default 'defer'
   */
  readonly action?: HitAction;
  /** Points for `weigh()`. @default 1 */
  readonly score?: number;
  /**
   * The admin's own pool patterns: a table file (`pcre:/etc/postfix/dynamic_pools`, `regexp:...`,
   * or sqlgrey's one-regexp-a-line `sqlgrey:/etc/sqlgrey/dyn_fqdn.regexp`) or inline lines in
   * pcre_table form (`/^dsl-.*\.example\.net$/`). A name a pattern matches is dynamic, whatever the
   * built-in classifier says; a rule whose result is `DUNNO` ends the lookup in that table without a
   * match (as in Postfix). Other results (`REJECT ...`, a restriction class name) are kept for the
   * evidence only: what the check does is its `action`. Postfix semantics: case-insensitive unless
   * the `i` flag, `if`/`endif`, `!` negation.
   */
  readonly patterns?: string | readonly string[];
  /**
   * Names that are mail servers although they look dynamic (same forms as `patterns`). Looked at
   * first: a name an exemption matches is never dynamic.
   */
  readonly exempt?: string | readonly string[];
  /** Whether the built-in classifier judges names no admin pattern matched. @default true */
  readonly classifier?: boolean;
}

/** Options of `rdns-missing`. */
export interface RdnsMissingOptions extends CommonCheckOptions {
  /**
   * What a client without a PTR name gets. `reject` answers 550 5.7.1, `defer` 450 4.7.1 (Postfix's
   * `unknown_client_reject_code` default); `greylist`/`score` leave the finding `no-ptr`.
   * @default 'defer'
   */
  readonly action?: HitAction;
  /** Points for `weigh()`. @default 1 */
  readonly score?: number;
}

/** The client address as it may appear in a reply: an IP address, else `unknown` (never a line break). */
function printable(session: Session): string {
  return clientIp(session)?.address ?? 'unknown';
}

/** The name to judge: the forward-confirmed one when known, else the first PTR name. */
function nameToJudge(session: Session): string | undefined {
  const rdns = session.rdns;
  if (!rdns) return undefined;
  if (typeof rdns.verified === 'string' && rdns.verified.length > 0) return rdns.verified;
  return rdns.names[0];
}

/**
 * `rdns-dynamic` (stage connect): the client's PTR name classifies `dynamic` (see `classifyPtr`).
 * Judges the forward-confirmed name when there is one (Postfix's `client_name`), else the first PTR
 * name: the reverse zone belongs to whoever holds the address, so even an unconfirmed PTR is the
 * provider's own word about it. Reply when rejecting: 550 5.7.1 "Client host rejected:
 * dynamic-looking reverse DNS <name>; please use your provider's mail server"; by default deferred
 * as 450 4.7.1.
 */
export function rdnsDynamic(
  options: RdnsDynamicOptions = {},
  env?: TableEnv,
): Check & {
  /** Re-reads the pattern files now; one result a file (see `TableFile.reload`). */
  reload(): (true | false | Error)[];
} {
  const name = 'rdns-dynamic';
  const { action, score } = commonOptions(
    name,
    options as Record<string, unknown>,
    { action: 'defer', score: 1 },
    ['patterns', 'exempt', 'classifier'],
  );
  const useClassifier = options.classifier ?? true;
  if (typeof useClassifier !== 'boolean') throw new TypeError(`${name}: classifier must be true or false`);
  const files: TableFile<unknown>[] = [];
  const patterns = adminPatterns(name, 'patterns', options.patterns, env, files);
  const exempt = adminPatterns(name, 'exempt', options.exempt, env, files);
  if (!useClassifier && !patterns)
    throw new TypeError(`${name}: with the classifier off, give patterns (else the check finds nothing)`);
  return {
    name,
    stage: 'connect',
    reload: () => files.map((f) => f.reload()),
    run(session): Verdict {
      const rdns = session.rdns;
      if (!rdns) return next('reverse DNS not looked up');
      const ptr = nameToJudge(session);
      if (ptr === undefined)
        return next(rdns.error === 'temporary' ? 'temporary DNS failure' : 'no PTR name');
      const ex = exempt?.(ptr);
      if (ex) return next(`reverse DNS ${ptr} exempted by ${ex}`);
      const admin = patterns?.(ptr);
      const c = admin
        ? { class: 'dynamic' as const, evidence: [admin] }
        : useClassifier
          ? classifyPtr(clientIp(session) ?? session.clientAddress, ptr)
          : { class: 'static' as const, evidence: ['no admin pattern matched'] };
      const why = c.evidence.join('; ');
      if (c.class !== 'dynamic')
        return next(`reverse DNS ${c.class === 'unknown' ? 'unusable' : c.class}: ${why}`);
      const r = reply(
        550,
        '5.7.1',
        `Client host rejected: dynamic-looking reverse DNS ${ptr}; please use your provider's mail server`,
      );
      return hit(name, action, r, `dynamic-looking reverse DNS ${ptr}: ${why}`, 'dynamic', score);
    },
  };
}

/** Longest name an admin pattern is run on (RFC 1035: 253 characters; a margin for a root dot). */
const MAX_PATTERN_INPUT = 255;

/**
 * Compiles `patterns`/`exempt`: a table reference or inline pcre-form lines. Returns a function
 * giving the evidence of the first match (`admin table /path line 12`, `admin pattern 2`), or
 * undefined. A rule whose result starts with DUNNO is no match.
 */
function adminPatterns(
  check: string,
  option: string,
  value: unknown,
  env: TableEnv | undefined,
  files: TableFile<unknown>[],
): ((name: string) => string | undefined) | undefined {
  if (value === undefined) return undefined;
  const what = `${check}: ${option}`;
  const parse = (type: 'regexp' | 'pcre' | 'sqlgrey', text: string, source: string) =>
    parsePatternTable(type, text, source, (rhs) => rhs);
  const matcher = (get: () => PatternTable<string>, label: (line: number) => string) => (ptr: string) => {
    if (ptr.length > MAX_PATTERN_INPUT) return undefined;
    const m = matchPatternTable(get(), ptr);
    if (!m || /^DUNNO\b/i.test(m.value)) return undefined;
    return label(m.line);
  };
  if (typeof value === 'string') {
    const ref = parseTableRef(value, what);
    if (ref.type !== 'regexp' && ref.type !== 'pcre' && ref.type !== 'sqlgrey')
      throw new TypeError(`${what}: a pattern table is regexp:, pcre: or sqlgrey:, not ${ref.type}:`);
    if (!env)
      throw new TypeError(`${what}: a table file needs a file system; build the check with a TableEnv`);
    const type = ref.type;
    const f = tableFile(ref.path, (text, path) => parse(type, text, path), env);
    files.push(f);
    return matcher(
      () => f.get(),
      (line) => `admin table ${ref.path} line ${line}`,
    );
  }
  if (!Array.isArray(value) || !value.every((v) => typeof v === 'string'))
    throw new TypeError(`${what}: must be "type:/path" or a list of "/pattern/flags" lines`);
  if (value.some((v) => /[\r\n]/.test(v) || /^\s/.test(v)))
    throw new TypeError(`${what}: each pattern is one line`);
  const table = parse('pcre', value.join('\n'), what);
  return matcher(
    () => table,
    (line) => `admin pattern ${line}`,
  );
}

/**
 * `rdns-missing` (stage connect): the reverse lookup answered and the client address has no PTR
 * name, as Postfix's `reject_unknown_reverse_client_hostname`, with its text: "Client host rejected:
 * cannot find your reverse hostname, [ip]". A temporary lookup failure is never a hit (principle 2);
 * a session whose reverse DNS was not looked up is not judged.
 */
export function rdnsMissing(options: RdnsMissingOptions = {}): Check {
  const name = 'rdns-missing';
  const { action, score } = commonOptions(name, options as Record<string, unknown>, {
    action: 'defer',
    score: 1,
  });
  return {
    name,
    stage: 'connect',
    run(session): Verdict {
      const rdns = session.rdns;
      if (!rdns) return next('reverse DNS not looked up');
      if (rdns.error === 'temporary') return next('temporary DNS failure');
      if (rdns.names.length > 0) return next('client has a PTR name');
      const ip = printable(session);
      const r = reply(550, '5.7.1', `Client host rejected: cannot find your reverse hostname, [${ip}]`);
      return hit(name, action, r, `no PTR name for ${ip}`, 'no-ptr', score);
    },
  };
}

/** The reverse-DNS checks by config name: `rdns-dynamic` and `rdns-missing`. Options as above. */
export const rdnsFactories: Record<string, CheckFactory> = {
  'rdns-dynamic': withOptions(
    checkOptions({
      patterns: z
        .union([z.string(), stringList])
        .optional()
        .describe("The admin's own dynamic-pool patterns: a table file (type:/path) or inline lines"),
      exempt: z
        .union([z.string(), stringList])
        .optional()
        .describe('Names never taken for dynamic: a table file or inline lines'),
      classifier: z.boolean().optional().describe('Use the built-in classifier beside the patterns'),
    }),
    (options: Record<string, unknown>, _site: Site, env: unknown) =>
      rdnsDynamic(options as RdnsDynamicOptions, env as TableEnv | undefined),
  ),
  'rdns-missing': withOptions(checkOptions({}), (options: Record<string, unknown>, _site: Site) =>
    rdnsMissing(options as RdnsMissingOptions),
  ),
};
