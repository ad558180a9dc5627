/**
 * The modules that run for every request, command or looked-up client build no object as a spread
 * followed by keys of its own (`{ ...s, k }`, `{ ...a, ...b }`): Node 20's V8 gives each such
 * object a new hidden class, a microsecond or more a key (docs/DECISIONS.md, "Object spread on the
 * hot path"). `Object.assign({}, s, { k })`, a literal of the keys, or the spread after the
 * literal's keys (`{ k, ...s }`) cost a tenth of that. A spread that runs once (building a chain
 * or a store) says so on the line before: `// spread: once`.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';
import { describe, expect, it } from 'vitest';

const PACKAGES = fileURLToPath(new URL('../../', import.meta.url));

/** Folders whose every module runs per request, and single modules that do. */
const HOT_FOLDERS = [
  'core/src/checks',
  'core/src/rdns',
  'dns/src/checks',
  'greylist/src/stores',
  'reputation/src/stores',
  'callout/src/stores',
];
const HOT_FILES = [
  'core/src/chain.ts',
  'core/src/decision-log.ts',
  'core/src/deadline.ts',
  'core/src/memo.ts',
  'core/src/reply.ts',
  'core/src/weigh.ts',
  'postfix/src/server.ts',
  'postfix/src/protocol.ts',
  'postfix/src/attributes.ts',
  'greylist/src/check.ts',
  'greylist/src/key.ts',
  'greylist/src/allowlist.ts',
  'reputation/src/reputation.ts',
  'reputation/src/network.ts',
  'dns/src/resolver.ts',
  'dns/src/rdns.ts',
  'dns/src/lists.ts',
  'callout/src/callout.ts',
  'callout/src/cache.ts',
  'callout/src/probe.ts',
  'smtp/src/adapter.ts',
  'smtp/src/gateway.ts',
  'smtp/src/relay.ts',
  'smtp/src/spool.ts',
  'smtp/src/received.ts',
  'signals/src/geo.ts',
  'signals/src/geo-database.ts',
  'signals/src/received-check.ts',
  'signals/src/os-fingerprint.ts',
  'cli/src/logging.ts',
  'cli/src/privacy.ts',
  'cli/src/metrics.ts',
  'cli/src/decisions.ts',
];

function hotModules(): string[] {
  const out = HOT_FILES.map((f) => join(PACKAGES, f));
  for (const d of HOT_FOLDERS) {
    for (const f of readdirSync(join(PACKAGES, d))) if (f.endsWith('.ts')) out.push(join(PACKAGES, d, f));
  }
  return out;
}

/** Each object literal that starts with a spread and has more after it, as `file:line: text`. */
export function spreadsThenKeys(file: string, text: string): string[] {
  const src = ts.createSourceFile(file, text, ts.ScriptTarget.Latest, true);
  const lines = text.split('\n');
  const found: string[] = [];
  const visit = (n: ts.Node): void => {
    if (ts.isObjectLiteralExpression(n)) {
      const props = n.properties;
      if (props.length > 1 && props[0] !== undefined && ts.isSpreadAssignment(props[0])) {
        const line = src.getLineAndCharacterOfPosition(n.getStart()).line;
        const before = lines.slice(Math.max(0, line - 2), line + 1).join('\n');
        if (!before.includes('// spread: once')) {
          found.push(`${file}:${line + 1}: ${n.getText().replace(/\s+/g, ' ').slice(0, 80)}`);
        }
      }
    }
    ts.forEachChild(n, visit);
  };
  visit(src);
  return found;
}

describe('object spread on the hot path', () => {
  it('finds the forms it is meant to find, and only those', () => {
    const code = [
      'const a = { ...s, k: 1 };',
      'const b = { ...s, ...t };',
      'const c = { k: 1, ...s };',
      'const d = { ...s };',
      'const e = Object.assign({}, s, { k: 1 });',
      '// spread: once',
      'const f = { ...s, k: 1 };',
    ].join('\n');
    expect(spreadsThenKeys('x.ts', code).map((l) => l.split(': ')[0])).toEqual(['x.ts:1', 'x.ts:2']);
  });

  it('the modules that run per request have none', () => {
    const modules = hotModules();
    expect(modules.length).toBeGreaterThan(40);
    const found = modules.flatMap((f) => spreadsThenKeys(f.slice(PACKAGES.length), readFileSync(f, 'utf8')));
    expect(found).toEqual([]);
  });
});
