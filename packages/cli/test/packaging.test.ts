import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

// These tests read the built packages (dist/), which `pnpm test` builds before vitest runs.
const packagesDir = fileURLToPath(new URL('../../', import.meta.url));
const packages = readdirSync(packagesDir).filter((d) => existsSync(join(packagesDir, d, 'package.json')));

interface Manifest {
  name: string;
  main: string;
  types: string;
  exports: Record<string, unknown>;
  engines?: { node?: string };
}

describe('every package builds to what its exports map promises', () => {
  for (const dir of packages) {
    const manifest = JSON.parse(readFileSync(join(packagesDir, dir, 'package.json'), 'utf8')) as Manifest;
    it(`${manifest.name}: every exports target exists`, () => {
      const leaves = (t: unknown): string[] =>
        typeof t === 'string' ? [t] : Object.values(t as Record<string, unknown>).flatMap(leaves);
      const targets = leaves(manifest.exports);
      for (const t of [...targets, manifest.main, manifest.types]) {
        expect(existsSync(join(packagesDir, dir, t)), `${manifest.name} ${t}`).toBe(true);
      }
      expect(manifest.engines?.node).toBe('>=20.19.0');
    });
  }

  it('CommonJS code (a Haraka plugin) can require() every package on this Node', () => {
    // Each package is required by its name through its own exports map (Node's self-reference),
    // with no NODE_PATH: what an installed copy gives a CommonJS caller.
    const script = packages
      .map((d) => ({
        d,
        m: JSON.parse(readFileSync(join(packagesDir, d, 'package.json'), 'utf8')) as Manifest,
      }))
      .filter(({ m }) => m.name !== 'mxguard')
      .map(
        ({ d, m }) =>
          `n += Object.keys(createRequire(${JSON.stringify(join(packagesDir, d, 'package.json'))})(${JSON.stringify(m.name)})).length;`,
      )
      .join('\n');
    const out = execFileSync(
      process.execPath,
      ['-e', `const { createRequire } = require('node:module');\nlet n = 0;\n${script}\nconsole.log(n);`],
      {
        cwd: join(packagesDir, 'cli'),
        encoding: 'utf8',
        env: { ...process.env, NODE_PATH: '', NODE_NO_WARNINGS: '1' },
      },
    );
    expect(Number(out.trim())).toBeGreaterThan(20);
  });

  it('require() of @mxguard/core gives working functions, not just names', () => {
    const out = execFileSync(
      process.execPath,
      [
        '-e',
        `const { reply, soften } = require('@mxguard/core'); console.log(JSON.stringify(soften(reply(554, '5.7.1', 'x'))));`,
      ],
      { cwd: join(packagesDir, 'cli'), encoding: 'utf8', env: { ...process.env, NODE_NO_WARNINGS: '1' } },
    );
    expect(JSON.parse(out)).toEqual({ code: 450, enhanced: '4.7.1', text: 'x' });
  });
});
