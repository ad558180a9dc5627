import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

// The command line a person expects: help with defaults, a version, usage errors that name the
// flag, and a busy port said in one line.
const bin = fileURLToPath(new URL('../dist/bin.js', import.meta.url));
const manifest = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as {
  version: string;
};

function mxguard(args: string[]) {
  const r = spawnSync(process.execPath, [bin, ...args], { encoding: 'utf8', input: '', timeout: 30_000 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** Every long flag a help text lists, with the text of its entry (description and default). */
function flagsOf(help: string): Map<string, string> {
  const flags = new Map<string, string>();
  const entries = help.split('\nOptions:\n')[1]?.split(/\n(?=\s{2}(?:-\w, )?--)/) ?? [];
  for (const e of entries) {
    const m = /--([\w-]+)/.exec(e);
    if (m) flags.set(m[1]!, e.replace(/\s+/g, ' '));
  }
  return flags;
}

describe('--help', () => {
  it('the top level lists every command; no arguments is a usage error that shows it', () => {
    const r = mxguard(['--help']);
    expect(r.status).toBe(0);
    for (const c of ['check', 'serve', 'policy']) expect(r.stdout).toMatch(new RegExp(`^\\s+${c} `, 'm'));
    const none = mxguard([]);
    expect(none.status).toBe(2);
    expect(none.stderr).toContain('Commands:');
  });

  const common = ['config', 'offline', 'resolver', 'log-level'];
  const expected: Record<string, Record<string, RegExp>> = {
    check: {},
    serve: { listen: /default: "127\.0\.0\.1:2525"/, spool: /default: "spool"/ },
    policy: { listen: /default: "127\.0\.0\.1:10023"/, socket: /default: none/ },
  };
  for (const [command, own] of Object.entries(expected)) {
    it(`${command} --help lists every flag, each with its default`, () => {
      const r = mxguard([command, '--help']);
      expect(r.status).toBe(0);
      const flags = flagsOf(r.stdout);
      for (const f of [...common, ...Object.keys(own)]) expect(flags.has(f), `${command} --${f}`).toBe(true);
      for (const [f, d] of Object.entries(own)) expect(flags.get(f)).toMatch(d);
      expect(flags.get('log-level')).toMatch(/default: "info"/);
      expect(flags.get('offline')).toMatch(/default: false/);
      // Every option entry says its default (or that it has none), so nothing is implicit.
      for (const [f, text] of flags) {
        if (f === 'help' || f === 'version') continue;
        expect(text, `${command} --${f}`).toMatch(/default: /);
      }
      // `mxguard help serve` is the same text.
      expect(mxguard(['help', command]).stdout).toBe(r.stdout);
    });
  }
});

it('--version prints the package version', () => {
  for (const flag of ['--version', '-V']) {
    const r = mxguard([flag]);
    expect(r.status).toBe(0);
    expect(r.stdout.trim()).toBe(manifest.version);
  }
});

describe('usage errors exit 2 and name the flag', () => {
  it.each([
    [['check', '--nope'], /unknown option '--nope'/],
    [['frobnicate'], /unknown command 'frobnicate'/],
    [['check', '--log-level', 'loud'], /--log-level.*'loud' is invalid.*debug, info, warn, error/],
    [['check', '--offline', '--resolver', '127.0.0.1:53'], /--offline.*cannot be used with.*--resolver/],
    [
      ['policy', '--socket', '/tmp/p.sock', '--listen', '127.0.0.1:1'],
      /--listen.*cannot be used with.*--socket/,
    ],
    [['serve', '--offline', '--listen', '127.0.0.1:99999'], /--listen must be HOST:PORT.*99999/],
    [['serve', '--listen'], /'--listen <host:port>' argument missing/],
  ])('%j', (args, message) => {
    const r = mxguard(args);
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(message);
    expect(r.stderr).not.toMatch(/\n\s+at /);
  });
});

describe('a busy port is one clear line and a non-zero exit, not a stack trace', () => {
  let taken: Server;
  let port = 0;
  beforeAll(async () => {
    taken = createServer();
    await new Promise<void>((r) => taken.listen(0, '127.0.0.1', r));
    port = (taken.address() as { port: number }).port;
  });
  afterAll(() => new Promise<void>((r) => taken.close(() => r())));

  it.each([['serve'], ['policy']])('%s', (command) => {
    const spool = join(tmpdir(), `mxguard-busy-${process.pid}`);
    const r = mxguard([
      command,
      '--offline',
      '--listen',
      `127.0.0.1:${port}`,
      ...(command === 'serve' ? ['--spool', spool] : []),
    ]);
    expect(r.status).toBe(1);
    expect(r.stderr).toBe(`mxguard: cannot listen on 127.0.0.1:${port}: address already in use\n`);
  });
});
