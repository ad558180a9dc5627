#!/usr/bin/env node
/**
 * `node scripts/check-packs.mjs [DIR]`: refuses a release whose tarballs a stranger could not
 * install. Reads every `*.tgz` of DIR (without DIR: packs every package of the workspace with
 * `pnpm -r pack` into a temporary folder first) and fails, naming the tarball and the field, when
 * one of them
 * - keeps a `workspace:`, `link:` or `file:` range in any dependency field (`npm pack` leaves
 *   `workspace:*` as it is; only `pnpm pack`/`pnpm publish` rewrite it);
 * - lacks a README.md, a LICENSE or a CHANGELOG.md, or is marked private;
 * - has a version other than the one all packages share (they are released together, `fixed` in
 *   .changeset/config.json), or other than the version of its package.json in the workspace, or
 *   depends on a sibling at a range that does not name the sibling's version.
 * Exit status 0 when every tarball passes, 1 with one line per problem otherwise.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('../', import.meta.url));
const FIELDS = ['dependencies', 'devDependencies', 'peerDependencies', 'optionalDependencies'];
const LOCAL = /^(workspace|link|file|portal):/;
const REQUIRED = ['README.md', 'LICENSE', 'CHANGELOG.md'];

/** The versions of the workspace's packages, by name, as their package.json files say. */
export function workspaceVersions(dir = root) {
  const versions = new Map();
  const packages = join(dir, 'packages');
  for (const p of readdirSync(packages)) {
    let json;
    try {
      json = JSON.parse(readFileSync(join(packages, p, 'package.json'), 'utf8'));
    } catch {
      continue;
    }
    if (!json.private) versions.set(json.name, json.version);
  }
  return versions;
}

/** The file list and the package.json of one tarball, read with tar. */
function readTarball(tgz) {
  const files = execFileSync('tar', ['-tzf', tgz], { encoding: 'utf8' }).split('\n').filter(Boolean);
  const json = JSON.parse(execFileSync('tar', ['-xzOf', tgz, 'package/package.json'], { encoding: 'utf8' }));
  return { files, json };
}

/**
 * Every problem of the tarballs in `dir`, one sentence each; empty when they may be published.
 * `expected` maps a package name to its version in the workspace (undefined: not checked).
 */
export function checkTarballs(dir, expected = workspaceVersions()) {
  const problems = [];
  const tarballs = readdirSync(dir).filter((f) => f.endsWith('.tgz'));
  if (tarballs.length === 0) return [`no tarball in ${dir}`];
  const packs = tarballs.map((f) => ({ file: f, ...readTarball(join(dir, f)) }));
  const versions = new Map(packs.map((p) => [p.json.name, p.json.version]));
  const shared = new Set(versions.values());
  if (shared.size > 1) {
    problems.push(
      `the packages are released together but have ${shared.size} versions: ${[...versions].map(([n, v]) => `${n}@${v}`).join(', ')}`,
    );
  }
  for (const { file, files, json } of packs) {
    const at = `${file} (${json.name}@${json.version})`;
    if (json.private) problems.push(`${at}: marked private`);
    for (const name of REQUIRED) {
      if (!files.includes(`package/${name}`)) problems.push(`${at}: no ${name}`);
    }
    const want = expected.get(json.name);
    if (want !== undefined && want !== json.version) {
      problems.push(`${at}: the workspace's package.json says ${want}`);
    }
    for (const field of FIELDS) {
      for (const [dep, range] of Object.entries(json[field] ?? {})) {
        if (LOCAL.test(range)) {
          problems.push(`${at}: ${field}.${dep} is "${range}", which npm cannot install (pack with pnpm)`);
          continue;
        }
        const sibling = versions.get(dep) ?? expected.get(dep);
        if (
          field !== 'devDependencies' &&
          sibling !== undefined &&
          range.replace(/^[\^~=]/, '') !== sibling
        ) {
          problems.push(`${at}: ${field}.${dep} is "${range}" but ${dep} is at ${sibling}`);
        }
      }
    }
  }
  return problems;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  let dir = process.argv[2];
  let temporary;
  if (dir === undefined) {
    temporary = mkdtempSync(join(tmpdir(), 'mxguard-packs-'));
    execFileSync('pnpm', ['-r', 'pack', '--pack-destination', temporary], {
      cwd: root,
      stdio: ['ignore', 'ignore', 'inherit'],
    });
    dir = temporary;
  }
  try {
    const problems = checkTarballs(dir);
    for (const p of problems) process.stderr.write(`check-packs: ${p}\n`);
    if (problems.length === 0) {
      process.stdout.write(
        `check-packs: ${readdirSync(dir).filter((f) => f.endsWith('.tgz')).length} tarballs may be published\n`,
      );
    }
    process.exitCode = problems.length === 0 ? 0 : 1;
  } finally {
    if (temporary) rmSync(temporary, { recursive: true, force: true });
  }
}
