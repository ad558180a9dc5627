/**
 * What published dynamic-pool tables flag on the labelled list, beside the built-in classifier,
 * per source of the list. Each table is loaded unmodified with mxguard's own Postfix/sqlgrey table
 * parser (the one `rdns-dynamic` `patterns` and the access tables use); a name counts as flagged
 * when a rule matches whose result is not DUNNO (Postfix semantics, `if`/`endif` included).
 *
 * Run: npx tsx scripts/rdns-tables.ts pcre:/path/fqrdns.pcre sqlgrey:/path/dyn_fqdn.regexp[-sqlgrey:/path/smtp_server.regexp]
 * (`A-B`: flagged by A and not by B, as sqlgrey uses dyn_fqdn.regexp with smtp_server.regexp.)
 */
import { readFileSync } from 'node:fs';
import { classifyPtr } from '../packages/core/src/rdns/index.js';
import { matchPatternTable, parsePatternTable, parseTableRef } from '../packages/core/src/tables/index.js';

const rows = readFileSync(
  new URL('../packages/core/test/fixtures/rdns-labelled.tsv', import.meta.url),
  'utf8',
)
  .split('\n')
  .filter((l) => l.length > 0 && !l.startsWith('#'))
  .map((l) => {
    const [ip = '', ptr = '', label = '', , , source = ''] = l.split('\t');
    return { ip, ptr, dynamic: label === 'dynamic', source };
  });

function load(ref: string): (name: string) => boolean {
  const r = parseTableRef(ref, 'table');
  if (r.type === 'cidr' || r.type === 'hash')
    throw new Error(`${ref}: a name table is regexp, pcre or sqlgrey`);
  const table = parsePatternTable(r.type, readFileSync(r.path, 'utf8'), r.path, (rhs) => rhs);
  return (name) => {
    const m = matchPatternTable(table, name);
    return m !== undefined && !/^DUNNO\b/i.test(m.value);
  };
}

type Judge = (ip: string, name: string) => boolean;
const judges: [string, Judge][] = [
  ['built-in classifier', (ip, name) => classifyPtr(ip, name).class === 'dynamic'],
];
for (const arg of process.argv.slice(2)) {
  const [flag, unflag] = arg.split(/-(?=(?:regexp|pcre|sqlgrey):)/);
  const yes = load(flag as string);
  const no = unflag ? load(unflag) : () => false;
  judges.push([arg.replace(/[^:]*\//g, ''), (_ip, name) => yes(name) && !no(name)]);
}

const sources = ['all', ...new Set(rows.map((r) => r.source))];
const fmt = (n: number) => (Number.isNaN(n) ? '-' : n.toFixed(3));
console.log('| judge | source | rows | TP | FP | FN | TN | precision | recall |');
console.log('| --- | --- | --- | --- | --- | --- | --- | --- | --- |');
for (const [label, judge] of judges) {
  for (const source of sources) {
    const part = source === 'all' ? rows : rows.filter((r) => r.source === source);
    let tp = 0;
    let fp = 0;
    let fn = 0;
    let tn = 0;
    for (const r of part) {
      const p = judge(r.ip, r.ptr);
      if (p && r.dynamic) tp++;
      else if (p) fp++;
      else if (r.dynamic) fn++;
      else tn++;
    }
    console.log(
      `| ${label} | ${source} | ${part.length} | ${tp} | ${fp} | ${fn} | ${tn} | ${fmt(tp / (tp + fp))} | ${fmt(tp / (tp + fn))} |`,
    );
  }
}
