import { execFileSync } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

/*
 * What a stranger gets: every package packed with `pnpm -r pack` (workspace:* rewritten), the
 * tarballs installed with npm into a fresh project outside the workspace, and there the README's
 * example, a smtp-server with a policy of the user's own, a vitest test of that policy (fake
 * resolver, manual clock) and `tsc --noEmit` under nodenext, node16 (ESM and CJS), bundler and
 * node10. The third-party packages come from the npm registry through the local npm cache
 * (--prefer-offline); every step has a time bound. Needs the build that `pnpm test` runs first.
 */
const root = fileURLToPath(new URL('../../../', import.meta.url));
const fixtures = fileURLToPath(new URL('./fixtures/consumer/', import.meta.url));
const tsc = join(root, 'node_modules/typescript/bin/tsc');
let dir = '';
let app = '';
let tarballs: string[] = [];
let packed = '';

function run(cmd: string, args: string[], cwd: string, timeout = 120_000): string {
  return execFileSync(cmd, args, {
    cwd,
    encoding: 'utf8',
    timeout,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, NODE_NO_WARNINGS: '1', npm_config_update_notifier: 'false' },
  });
}
const npm = (args: string[], cwd: string) =>
  run('npm', [...args, '--no-audit', '--no-fund', '--prefer-offline', '--loglevel=error'], cwd, 240_000);

function project(name: string, deps: Record<string, string>): string {
  const p = join(dir, name);
  mkdirSync(p);
  writeFileSync(
    join(p, 'package.json'),
    JSON.stringify({ name, private: true, type: 'module', dependencies: deps }, null, 2),
  );
  return p;
}

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'mxguard-pack-'));
  const out = join(dir, 'tarballs');
  packed = out;
  run('pnpm', ['-r', 'pack', '--pack-destination', out], root, 180_000);
  tarballs = readdirSync(out).map((f) => join(out, f));
  const tgz = (prefix: string) => {
    const t = tarballs.find((f) => f.split('/').pop()?.startsWith(prefix));
    if (!t) throw new Error(`no tarball ${prefix}`);
    return `file:${t}`;
  };
  app = project('app', {
    '@mxguard/callout': tgz('mxguard-callout-'),
    '@mxguard/core': tgz('mxguard-core-'),
    '@mxguard/dns': tgz('mxguard-dns-'),
    '@mxguard/greylist': tgz('mxguard-greylist-'),
    '@mxguard/postfix': tgz('mxguard-postfix-'),
    '@mxguard/redis': tgz('mxguard-redis-'),
    '@mxguard/reputation': tgz('mxguard-reputation-'),
    '@mxguard/signals': tgz('mxguard-signals-'),
    '@mxguard/smtp': tgz('mxguard-smtp-'),
    mxguard: tgz('mxguard-0'),
    'haraka-plugin-mxguard': tgz('haraka-plugin-mxguard-'),
    'smtp-server': '^3.21.6',
    '@types/smtp-server': '^3.5.13',
    '@types/node': '^20.19.0',
    vitest: '^4.1.0',
  });
  for (const f of readdirSync(fixtures)) copyFileSync(join(fixtures, f), join(app, f));
  copyFileSync(join(root, 'examples/policy.ts'), join(app, 'readme-policy.ts'));
  npm(['install'], app);
}, 600_000);

afterAll(() => {
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe('the packed tarballs, installed with npm outside the workspace', { timeout: 180_000 }, () => {
  it('hold dist, README and LICENSE, no sources or maps, and no workspace: range', () => {
    expect(tarballs.length).toBe(11);
    for (const t of tarballs) {
      const files = run('tar', ['-tzf', t], dir).split('\n');
      expect(files, t).toContain('package/README.md');
      expect(files, t).toContain('package/LICENSE');
      expect(
        files.filter((f) => f.startsWith('package/src/') || f.endsWith('.map')),
        t,
      ).toEqual([]);
      const manifest = run('tar', ['-xzOf', t, 'package/package.json'], dir);
      expect(manifest, t).not.toContain('workspace:');
    }
    // The gate of `pnpm release`: one version, CHANGELOG too, sibling ranges at that version.
    expect(run(process.execPath, [join(root, 'scripts/check-packs.mjs'), packed], root)).toBe(
      'check-packs: 11 tarballs may be published\n',
    );
  });

  const tsconfig = (options: Record<string, unknown>, files: string[]) =>
    JSON.stringify({
      compilerOptions: { strict: true, noEmit: true, skipLibCheck: true, types: ['node'], ...options },
      files,
    });
  const ts = ['readme-policy.ts', 'my-policy.ts', 'server.ts'];
  const configs: Record<string, string> = {
    nodenext: tsconfig({ module: 'nodenext', moduleResolution: 'nodenext', target: 'es2022' }, ts),
    'node16 ESM': tsconfig({ module: 'node16', moduleResolution: 'node16', target: 'es2022' }, ts),
    'node16 CJS': tsconfig({ module: 'node16', moduleResolution: 'node16', target: 'es2022' }, ['cjs.cts']),
    bundler: tsconfig({ module: 'esnext', moduleResolution: 'bundler', target: 'es2022' }, ts),
    'node10 without esModuleInterop': tsconfig(
      { module: 'commonjs', moduleResolution: 'node10', esModuleInterop: false, target: 'es2022' },
      ['node10.ts'],
    ),
  };
  for (const [name, config] of Object.entries(configs)) {
    it(`type-check a consumer under ${name}`, () => {
      const file = join(app, `tsconfig.${name.replace(/\W+/g, '-')}.json`);
      writeFileSync(file, config);
      let out = '';
      try {
        out = run(process.execPath, [tsc, '-p', file], app);
      } catch (err) {
        out = String((err as { stdout?: string }).stdout ?? err);
      }
      expect(out).toBe('');
    });
  }

  it('the README policy and a vitest test of my own policy (fake resolver, manual clock) pass', () => {
    const out = run(process.execPath, ['node_modules/vitest/vitest.mjs', 'run', 'my-policy.test.ts'], app);
    expect(out).toMatch(/2 passed/);
  });

  it('a smtp-server with my policy answers on the wire, and require() gives the same API', () => {
    writeFileSync(
      join(app, 'tsconfig.build.json'),
      JSON.stringify({
        compilerOptions: {
          module: 'nodenext',
          target: 'es2022',
          outDir: 'out',
          strict: true,
          types: ['node'],
        },
        files: ['server.ts', 'readme-policy.ts'],
      }),
    );
    run(process.execPath, [tsc, '-p', 'tsconfig.build.json'], app);
    const replies = JSON.parse(run(process.execPath, ['out/server.js'], app, 30_000)) as string[];
    expect(replies[0]).toMatch(/^220 /);
    expect(replies).toContain('450 4.7.1 Not today (no-bulk)');
    expect(replies.some((r) => /^450 4\.\d\.\d .*[Gg]reylist/.test(r))).toBe(true);
    const readme = run(
      process.execPath,
      [
        '--input-type=module',
        '-e',
        "import { myPolicy } from './out/readme-policy.js'; import { FakeResolver } from '@mxguard/dns'; const d = await myPolicy(new FakeResolver({})).evaluate({ clientAddress: '192.0.2.7', helo: 'mail.example.net', mailFrom: 'x@bulk.example.net', rcptTo: 'b@example.com', stage: 'rcpt' }); console.log(d.action, d.reply.code);",
      ],
      app,
    );
    expect(readme.trim()).toBe('defer 450');
    const cjs = run(
      process.execPath,
      ['-e', "console.log(typeof require('@mxguard/greylist').memoryStore)"],
      app,
    );
    expect(cjs.trim()).toBe('function');
  });

  it('without ioredis installed the memory store works and the Redis store names the missing package', () => {
    const tgz = (prefix: string) => `file:${tarballs.find((f) => f.split('/').pop()?.startsWith(prefix))}`;
    const lean = project('lean', {
      '@mxguard/core': tgz('mxguard-core-'),
      '@mxguard/greylist': tgz('mxguard-greylist-'),
      '@mxguard/redis': tgz('mxguard-redis-'),
    });
    npm(['install'], lean);
    expect(readdirSync(join(lean, 'node_modules'))).not.toContain('ioredis');
    const out = run(
      process.execPath,
      [
        '--input-type=module',
        '-e',
        "import { memoryStore, redisStore } from '@mxguard/greylist'; memoryStore(); try { redisStore(); } catch (e) { console.log(e.message); }",
      ],
      lean,
    );
    expect(out).toContain('needs the package "ioredis"');
    expect(out).toContain('npm install ioredis');
  });
});
