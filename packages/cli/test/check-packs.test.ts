import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';

/*
 * scripts/check-packs.mjs, the gate `pnpm release` passes before `pnpm -r publish`, run on
 * tarballs made here with tar (package/ prefix, as npm and pnpm lay them out). The real packages
 * go through it in pack-install.test.ts.
 */
const root = fileURLToPath(new URL('../../../', import.meta.url));
const script = join(root, 'scripts/check-packs.mjs');
let dir = '';

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'mxguard-check-packs-'));
});
afterEach(() => {
  rmSync(dir, { recursive: true, force: true });
});

function tarball(
  file: string,
  manifest: Record<string, unknown>,
  docs = ['README.md', 'LICENSE', 'CHANGELOG.md'],
): void {
  const src = join(dir, `src-${file}`, 'package');
  mkdirSync(src, { recursive: true });
  writeFileSync(join(src, 'package.json'), JSON.stringify(manifest));
  writeFileSync(join(src, 'index.js'), 'export {};\n');
  for (const d of docs) writeFileSync(join(src, d), `${d}\n`);
  const out = join(dir, 'tarballs');
  mkdirSync(out, { recursive: true });
  const tar = spawnSync('tar', ['-czf', join(out, file), '-C', join(src, '..'), 'package']);
  expect(tar.status).toBe(0);
}

function check(): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [script, join(dir, 'tarballs')], {
    encoding: 'utf8',
    timeout: 30_000,
  });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

describe('check-packs', () => {
  it('passes tarballs at one version, with their docs and sibling ranges naming that version', () => {
    tarball('demo-a-1.2.0.tgz', { name: 'demo-a', version: '1.2.0' });
    tarball('demo-b-1.2.0.tgz', {
      name: 'demo-b',
      version: '1.2.0',
      dependencies: { 'demo-a': '1.2.0', 'lru-cache': '^11.0.0' },
      peerDependencies: { 'demo-a': '^1.2.0' },
    });
    const r = check();
    expect(r.stderr).toBe('');
    expect(r.stdout).toBe('check-packs: 2 tarballs may be published\n');
    expect(r.status).toBe(0);
  });

  it('refuses a workspace: range, a missing LICENSE or CHANGELOG, and versions that disagree', () => {
    tarball('demo-a-1.2.0.tgz', { name: 'demo-a', version: '1.2.0' }, ['README.md']);
    tarball('demo-b-1.3.0.tgz', {
      name: 'demo-b',
      version: '1.3.0',
      dependencies: { 'demo-a': 'workspace:*', 'demo-c': '1.1.0' },
    });
    tarball('demo-c-1.2.0.tgz', { name: 'demo-c', version: '1.2.0', private: true });
    const r = check();
    expect(r.status).toBe(1);
    const lines = r.stderr.trim().split('\n');
    expect(lines).toEqual(
      expect.arrayContaining([
        expect.stringMatching(/released together but have 2 versions: .*demo-b@1\.3\.0/),
        'check-packs: demo-a-1.2.0.tgz (demo-a@1.2.0): no LICENSE',
        'check-packs: demo-a-1.2.0.tgz (demo-a@1.2.0): no CHANGELOG.md',
        'check-packs: demo-b-1.3.0.tgz (demo-b@1.3.0): dependencies.demo-a is "workspace:*", which npm cannot install (pack with pnpm)',
        'check-packs: demo-b-1.3.0.tgz (demo-b@1.3.0): dependencies.demo-c is "1.1.0" but demo-c is at 1.2.0',
        'check-packs: demo-c-1.2.0.tgz (demo-c@1.2.0): marked private',
      ]),
    );
    expect(lines).toHaveLength(6);
    expect(r.stdout).toBe('');
  });

  it('refuses a tarball whose version is not the one in the workspace', () => {
    const core = JSON.parse(readFileSync(join(root, 'packages/core/package.json'), 'utf8')) as {
      version: string;
    };
    tarball('mxguard-core-99.0.0.tgz', { name: '@mxguard/core', version: '99.0.0' });
    const r = check();
    expect(r.status).toBe(1);
    expect(r.stderr).toBe(
      `check-packs: mxguard-core-99.0.0.tgz (@mxguard/core@99.0.0): the workspace's package.json says ${core.version}\n`,
    );
  });

  it('says so when there is nothing to check', () => {
    mkdirSync(join(dir, 'tarballs'));
    const r = check();
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/no tarball in /);
  });
});
