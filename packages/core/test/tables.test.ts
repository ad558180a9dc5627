/**
 * Table files in Postfix's own formats (regexp_table(5), pcre_table(5), cidr_table(5), access(5)
 * source text) and sqlgrey's dyn_fqdn.regexp, read from real files on disk and followed when they
 * change; the GREYLIST and SCORE actions that feed the selective greylist and weigh().
 */
import * as fs from 'node:fs';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Check, CheckContext, Logger, Session, TableEnv, Verdict } from '@mxguard/core';
import {
  accessTable,
  chain,
  coreFactories,
  ManualClock,
  matchPatternTable,
  parsePatternTable,
  rdnsDynamic,
  silentLogger,
  site,
} from '@mxguard/core';
import { afterAll, describe, expect, it } from 'vitest';

const dir = mkdtempSync(join(tmpdir(), 'mxguard-tables-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
let n = 0;
/** Writes a table file and returns its path. */
function file(text: string): string {
  const p = join(dir, `t${++n}`);
  writeFileSync(p, text);
  return p;
}

const logged: { level: string; obj: Record<string, unknown>; msg?: string }[] = [];
const log: Logger = {
  debug: () => {},
  info: (obj, msg) => logged.push({ level: 'info', obj: obj as Record<string, unknown>, msg }),
  warn: (obj, msg) => logged.push({ level: 'warn', obj: obj as Record<string, unknown>, msg }),
  error: (obj, msg) => logged.push({ level: 'error', obj: obj as Record<string, unknown>, msg }),
};
const clock = new ManualClock(1_000_000);
const env: TableEnv = { fs, clock, log };
const ctx: CheckContext = { clock, log: silentLogger, findings: [] };

function run(check: Check, over: Partial<Session>): Verdict {
  const v = check.run({ clientAddress: '198.51.100.7', stage: 'rcpt', ...over }, ctx);
  if (v instanceof Promise) throw new Error('table checks answer at once');
  return v;
}
const ptr = (name: string, address = '198.51.100.7'): Partial<Session> => ({
  clientAddress: address,
  rdns: { names: [name], verified: name },
});

describe('regexp: and pcre: tables (regexp_table(5), pcre_table(5))', () => {
  const dynamicPools = `# dynamic pools of our neighbours
/^dsl-[0-9]+-[0-9]+\\.example\\.net$/   GREYLIST
/\\.dyn\\.example\\.org$/              GREYLIST 15m dynamic pool of
  example.org
!/\\./                                 REJECT single label
/^(mail)\\.example\\.com$/              DUNNO
/^([a-z]+)-static\\.example\\.com$/     REJECT 5.7.1 $1 is not a mail server
`;
  it('loads a Postfix regexp table: comments, continuation lines, negation, DUNNO, $1', () => {
    const c = accessTable({ key: 'client', table: `regexp:${file(dynamicPools)}` }, env);
    const a = run(c, ptr('dsl-12-34.example.net'));
    expect(a).toMatchObject({
      action: 'next',
      findings: [{ check: 'client-access', tag: 'table', doubt: true }],
    });
    const b = run(c, ptr('h1.DYN.example.org'));
    // matched case-insensitively (Postfix's default), the continuation line joined, the delay asked for
    expect(b).toMatchObject({ findings: [{ tag: 'table:delay=900', doubt: true }] });
    expect((b as { reason: string }).reason).toMatch(
      /matched in client-access \(.*\/t\d+ line 3\): GREYLIST 900s dynamic pool of example\.org$/,
    );
    const single = run(c, ptr('localhostish'));
    expect(single).toMatchObject({
      action: 'reject',
      reply: { code: 554, text: expect.stringContaining('single label') },
    });
    expect(run(c, ptr('mail.example.com'))).toMatchObject({
      action: 'next',
      reason: expect.stringMatching(/DUNNO$/),
    });
    expect(run(c, ptr('shop-static.example.com'))).toMatchObject({
      action: 'reject',
      reply: {
        text: '<shop-static.example.com[198.51.100.7]>: Client host rejected: shop is not a mail server',
      },
    });
    // no match on the name: the address is looked up next (it has a dot, so the negation misses)
    expect(run(c, ptr('www.example.net')).action).toBe('next');
  });

  it('if/endif blocks nest, and "if !" enters when the pattern does not match', () => {
    const t = `if /\\.example\\.net$/
if !/^mail/
/^[a-z]+[0-9]+\\./ SCORE 2.5 numbered host
endif
/^mail[0-9]+\\./  OK
endif
/^x/ REJECT outside
`;
    const c = accessTable({ key: 'client', table: `pcre:${file(t)}` }, env);
    expect(run(c, ptr('pc12.example.net'))).toMatchObject({ findings: [{ tag: 'table', score: 2.5 }] });
    expect(run(c, ptr('mail12.example.net')).action).toBe('accept');
    expect(run(c, ptr('pc12.example.org')).action).toBe('next');
    expect(run(c, ptr('x1.example.org')).action).toBe('reject');
  });

  it('pcre flags: x (extended), A (anchored), i toggles case-sensitivity on; POSIX classes', () => {
    const t = `/ ^ dsl - [[:digit:]]+ \\. example # comment
 /x GREYLIST
/pool/A GREYLIST
/CaSe/i GREYLIST
`;
    const c = accessTable({ key: 'rdns', table: `pcre:${file(t)}` }, env);
    expect(run(c, ptr('dsl-42.example.net')).action).toBe('next');
    expect(run(c, ptr('dsl-42.example.net'))).toMatchObject({ findings: [{ doubt: true }] });
    expect(run(c, ptr('pool1.example.net'))).toMatchObject({ findings: [{ doubt: true }] });
    expect(run(c, ptr('a.pool1.example.net'))).not.toHaveProperty('findings');
    expect(run(c, ptr('CaSe.example.net'))).toMatchObject({ findings: [{ doubt: true }] });
    expect(run(c, ptr('case.example.net'))).not.toHaveProperty('findings');
  });

  it('errors name the file and the line', () => {
    const bad =
      (text: string, type = 'pcre') =>
      () =>
        accessTable({ key: 'client', table: `${type}:${file(text)}` }, env);
    expect(bad('# c\n/ok/ OK\n/unterminated OK\n')).toThrow(/\/t\d+: line 3: unterminated pattern/);
    expect(bad('/a/ OK\n\n/b/ HOLD\n')).toThrow(/\/t\d+: line 3: action "HOLD" is not one of/);
    expect(bad('/a/ OK\nif /b/\n/c/ OK\n')).toThrow(/\/t\d+: line 2: "if" without "endif"/);
    expect(bad('/a/ OK\nendif\n')).toThrow(/line 2: "endif" without "if"/);
    expect(bad('/a(/ OK\n')).toThrow(/line 1: Invalid regular expression/);
    expect(bad('/a/ GREYLIST 9w\n')).toThrow(/line 1: GREYLIST delay "9w" must be 1s to 1w/);
    expect(bad('/a/ SCORE lots\n')).toThrow(/line 1: SCORE needs a number/);
    expect(bad('/a/U OK\n')).toThrow(/line 1: flag "U"/);
    expect(bad('/a/\n')).toThrow(/line 1: expected an action/);
    expect(() => accessTable({ key: 'client', table: 'pcre:relative/path' }, env)).toThrow(
      /must be absolute/,
    );
    expect(() => accessTable({ key: 'client', table: 'ldap:/etc/x' }, env)).toThrow(/table type "ldap"/);
    expect(() => accessTable({ key: 'client', table: `pcre:${join(dir, 'missing')}` }, env)).toThrow(
      /ENOENT/,
    );
    expect(() => accessTable({ key: 'client', table: `pcre:${file('/a/ OK\n')}` })).toThrow(
      /needs a file system/,
    );
    expect(() => accessTable({ key: 'client', entries: {}, table: 'pcre:/x' }, env)).toThrow(/not both/);
  });
});

describe('cidr: and hash: tables', () => {
  it('cidr_table(5): first match in file order, if/endif, IPv6, addresses only', () => {
    const t = `192.0.2.0/24 GREYLIST
192.0.2.7 REJECT never reached (the /24 comes first)
if 2001:db8::/32
2001:db8:1::/48 SCORE 3
endif
198.51.100.0/24 DEFER_IF_PERMIT not here
`;
    const c = accessTable({ key: 'client', table: `cidr:${file(t)}` }, env);
    expect(run(c, { clientAddress: '192.0.2.7' })).toMatchObject({ findings: [{ doubt: true }] });
    expect(run(c, { clientAddress: '2001:db8:1::5' })).toMatchObject({ findings: [{ score: 3 }] });
    expect(run(c, { clientAddress: '2001:db8:2::5' }).action).toBe('next');
    expect(run(c, { clientAddress: '198.51.100.9' })).toMatchObject({ action: 'defer', ifPermit: true });
    expect(() => accessTable({ key: 'sender', table: `cidr:${file(t)}` }, env)).toThrow(/addresses/);
    expect(() => accessTable({ key: 'client', table: `cidr:${file('192.0.2.1/24 OK\n')}` }, env)).toThrow(
      /line 1: .*host bits set/,
    );
  });

  it('hash: reads the postmap source text: key action, parent domains, errors with the line', () => {
    const c = accessTable(
      {
        key: 'sender',
        table: `hash:${file('# senders\nexample.org   GREYLIST 1h\nbad@example.net REJECT\n')}`,
      },
      env,
    );
    expect(run(c, { mailFrom: 'a@sub.example.org' })).toMatchObject({
      findings: [{ tag: 'table:delay=3600' }],
    });
    expect((run(c, { mailFrom: 'bad@example.net' }) as { reason: string }).reason).toMatch(/t\d+ line 3\)$/);
    expect(() => accessTable({ key: 'sender', table: `lmdb:${file('a@ HOLD\n')}` }, env)).toThrow(
      /t\d+: line 1: action "HOLD"/,
    );
  });

  it('inline entries take GREYLIST and SCORE too, with the entry in the evidence', () => {
    const c = accessTable({
      key: 'helo',
      entries: 'localdomain GREYLIST 10m\n\npc.lan SCORE -1 known box\n',
    });
    expect(run(c, { helo: 'x.localdomain' })).toMatchObject({
      reason: 'HELO x.localdomain matched in helo-access (line 1): GREYLIST 600s',
      findings: [{ check: 'helo-access', tag: 'table:delay=600', doubt: true }],
    });
    expect(run(c, { helo: 'pc.lan' })).toMatchObject({ findings: [{ score: -1 }] });
  });
});

describe('a table file followed on disk', () => {
  it('is looked at on use at most once a second; a changed file is in force after that', () => {
    const p = file('/^a\\./ REJECT first\n');
    const c = accessTable({ key: 'client', table: `pcre:${p}` }, env);
    expect(run(c, ptr('a.example.net')).action).toBe('reject');
    writeFileSync(p, '/^a\\./ GREYLIST\n/^b\\./ REJECT second\n');
    fs.utimesSync(p, new Date(), new Date(Date.now() + 5000)); // a different mtime even on coarse clocks
    clock.advance(999);
    expect(run(c, ptr('a.example.net')).action).toBe('reject'); // not looked at yet
    clock.advance(1);
    expect(run(c, ptr('a.example.net'))).toMatchObject({ action: 'next', findings: [{ doubt: true }] });
    expect(run(c, ptr('b.example.net')).action).toBe('reject');
    expect(logged.some((l) => l.obj.table === p && l.msg === 'table file changed; new table in force')).toBe(
      true,
    );
  });

  it('a file that no longer parses keeps the old table in force and logs why, once', () => {
    const p = file('/^a\\./ REJECT\n');
    const c = accessTable({ key: 'client', table: `pcre:${p}` }, env);
    writeFileSync(p, '/^a\\./ REJECT\n/^b\\./ HOLD\n');
    fs.utimesSync(p, new Date(), new Date(Date.now() + 10_000));
    clock.advance(1000);
    expect(run(c, ptr('a.example.net')).action).toBe('reject');
    clock.advance(1000);
    run(c, ptr('a.example.net'));
    const warns = logged.filter((l) => l.obj.table === p && l.level === 'warn');
    expect(warns).toHaveLength(1);
    expect(String(warns[0]?.obj.err)).toMatch(/line 2: action "HOLD"/);
    // fixed: the new text is in force
    writeFileSync(p, '/^b\\./ REJECT\n');
    fs.utimesSync(p, new Date(), new Date(Date.now() + 20_000));
    expect((c as { reload?: () => unknown }).reload?.()).toBe(true);
    expect(run(c, ptr('a.example.net')).action).toBe('next');
    expect(run(c, ptr('b.example.net')).action).toBe('reject');
  });

  it('a file that went away keeps the old table', () => {
    const p = file('/^a\\./ REJECT\n');
    const c = accessTable({ key: 'client', table: `pcre:${p}` }, env);
    rmSync(p);
    clock.advance(1000);
    expect(run(c, ptr('a.example.net')).action).toBe('reject');
    expect(logged.some((l) => l.obj.table === p && l.level === 'warn')).toBe(true);
  });
});

describe('rdns-dynamic: the admin’s own patterns and exemptions', () => {
  const session = (name: string, address = '203.0.113.5') => ({
    clientAddress: address,
    stage: 'connect' as const,
    rdns: { names: [name], verified: name },
  });
  const judge = (check: Check, name: string) => {
    const v = check.run(session(name), ctx);
    if (v instanceof Promise) throw new Error('sync');
    return v;
  };

  it('a Postfix-format pattern file makes a name the classifier calls static dynamic, with the line as evidence', () => {
    const p = file('# our region\n/^gw[0-9]+\\.custnet\\.example$/ REJECT dynamic\n/^dsl\\./ DUNNO\n');
    const c = rdnsDynamic({ patterns: `regexp:${p}`, action: 'greylist' }, env);
    expect(judge(rdnsDynamic({ action: 'greylist' }), 'gw7.custnet.example').action).toBe('next');
    expect(judge(rdnsDynamic({ action: 'greylist' }), 'gw7.custnet.example')).not.toHaveProperty('findings');
    const v = judge(c, 'gw7.custnet.example');
    expect(v).toMatchObject({
      action: 'next',
      findings: [{ check: 'rdns-dynamic', tag: 'dynamic', doubt: true }],
    });
    expect((v as { reason: string }).reason).toBe(
      `dynamic-looking reverse DNS gw7.custnet.example: admin table ${p} line 2`,
    );
    // DUNNO: no match in the admin table, the classifier still judges
    expect(judge(c, 'dsl.example.net')).toMatchObject({
      reason: expect.stringContaining('access word "dsl"'),
    });
  });

  it('exemptions win over patterns and the classifier; inline lines use pcre_table form', () => {
    const c = rdnsDynamic({ patterns: ['/^gw/'], exempt: ['/^mail-/', '/^dsl-1-2-3-4\\.example\\.net$/'] });
    expect(judge(c, 'gw.example.net')).toMatchObject({
      action: 'defer',
      reason: expect.stringContaining('admin pattern 1'),
    });
    expect(judge(c, 'dsl-1-2-3-4.example.net')).toMatchObject({
      action: 'next',
      reason: 'reverse DNS dsl-1-2-3-4.example.net exempted by admin pattern 2',
    });
  });

  it('loads sqlgrey’s one-regexp-a-line format (dyn_fqdn.regexp) unmodified', () => {
    // The shape of sqlgrey's etc/dyn_fqdn.regexp: bare Perl regexps, POSIX classes, no actions.
    const p = file(
      '(^|[0-9.x_-])(abo|cbl|d?client2?|[asx]?dsld?|S0106[[:alnum:]]{12,}\\.[a-z]{2})[0-9.x_-]\n',
    );
    const c = rdnsDynamic({ patterns: `sqlgrey:${p}`, classifier: false, action: 'score', score: 2 }, env);
    expect(judge(c, 'cbl-203-0-113-5.example.net')).toMatchObject({ findings: [{ score: 2 }] });
    expect(judge(c, 's0106aabbccddeeff.cg.example.net')).toMatchObject({ findings: [{ score: 2 }] });
    expect(judge(c, 'smtp.example.net')).toMatchObject({
      action: 'next',
      reason: expect.stringContaining('no admin pattern'),
    });
  });

  it('refuses what does not say what its author meant', () => {
    expect(() => rdnsDynamic({ patterns: 'hash:/etc/x' }, env)).toThrow(/regexp:, pcre: or sqlgrey:/);
    expect(() => rdnsDynamic({ patterns: ['/a/', 42] as never })).toThrow(/list of/);
    expect(() => rdnsDynamic({ classifier: false })).toThrow(/give patterns/);
    expect(() => rdnsDynamic({ pattern: ['/a/'] } as never)).toThrow(/unknown option "pattern"/);
    expect(() => rdnsDynamic({ patterns: 'pcre:/etc/postfix/x' })).toThrow(/needs a file system/);
  });
});

describe('the pattern-table primitives', () => {
  it('match in table order and report the line', () => {
    const t = parsePatternTable('pcre', '/a/ one\n# x\n/b/ two\n', 'inline', (v) => v);
    expect(t.rules).toBe(2);
    expect(matchPatternTable(t, 'xb')).toMatchObject({ value: 'two', line: 3 });
    expect(matchPatternTable(t, 'zz')).toBeUndefined();
  });

  it('a GREYLIST table feeds the chain like the other doubts (factories take the table env)', async () => {
    const f = coreFactories['client-access'];
    const c = f?.({ table: `pcre:${file('/pool/ GREYLIST 20m\n')}` }, site(), env);
    expect(c).toBeDefined();
    const d = await chain([{ check: c as Check, mode: 'enforce' }], { clock, log: silentLogger }).evaluate({
      clientAddress: '192.0.2.1',
      stage: 'rcpt',
      rdns: { names: ['pool-1.example.net'], verified: 'pool-1.example.net' },
    });
    expect(d.findings).toEqual([{ check: 'client-access', tag: 'table:delay=1200', doubt: true }]);
  });
});
