import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

/*
 * Each example of examples/ as a reader runs it from a fresh clone: `pnpm example NAME`, that is
 * tsx on examples/run.ts, the packages imported by name through the root's node_modules (the
 * built packages, not the tests' aliases). The servers listen on free loopback ports and are
 * closed before the process exits. Needs the build that `pnpm test` runs first.
 * (`pnpm example policy` is in readme.test.ts.)
 */
const root = fileURLToPath(new URL('../../../', import.meta.url));

function example(...name: string[]): string {
  const { FORCE_COLOR: _, ...env } = process.env;
  const out = execFileSync(process.execPath, ['--import', 'tsx', 'examples/run.ts', ...name], {
    cwd: root,
    encoding: 'utf8',
    env: { ...env, NODE_NO_WARNINGS: '1', NO_COLOR: '1' },
    timeout: 90_000,
  });
  return out.replace(/\x1b\[[0-9;]*m/g, '');
}

describe('pnpm example', () => {
  it('lists the examples', () => {
    const out = example();
    for (const name of ['policy', 'gateway', 'postfix', 'haraka', 'test'])
      expect(out).toContain(`  ${name}: examples/`);
  });

  it('gateway: smtp-server refuses at RCPT what the policy refuses, and queues the rest', () => {
    const lines = example('gateway').trim().split('\n');
    expect(lines[0]).toMatch(/^S: 220 mx\.example\.com/);
    const after = (command: string) => lines[lines.indexOf(`C: ${command}`) + 1];
    expect(lines.filter((l) => l === 'C: RCPT TO:<b@example.com>')).toHaveLength(2);
    expect(lines[lines.indexOf('C: RCPT TO:<b@example.com>') + 1]).toMatch(
      /^S: 450 4\.7\.1 Not today.*\(no-bulk/,
    );
    expect(after('RCPT TO:<x@elsewhere.org>')).toBe('S: 554 5.7.1 <x@elsewhere.org>: Relay access denied');
    expect(lines[lines.lastIndexOf('C: RCPT TO:<b@example.com>') + 1]).toMatch(/^S: 250 /);
    expect(after('Subject: hello')).toMatch(/^S: 250 .*queued as Q1/);
    expect(lines.at(-1)).toMatch(/^S: 221 /);
  });

  it('postfix: the policy server answers each request as Postfix reads it', () => {
    expect(example('postfix').trim().split('\n')).toEqual([
      'clean mail: action=DUNNO',
      expect.stringMatching(/^a listed client: action=554 5\.7\.1 .*blocked using zen\.spamhaus\.org/),
      expect.stringMatching(/^a bulk sender: action=450 4\.7\.1 Not today/),
      expect.stringMatching(/^relaying: action=554 5\.7\.1 <x@elsewhere\.org>: Relay access denied/),
    ]);
  });

  it('haraka: the plugin in a Haraka laid out with haraka -i refuses relaying and a HELO claiming us, queues the rest', () => {
    const lines = example('haraka').trim().split('\n');
    expect(lines[0]).toMatch(/^Haraka with mxguard listening on 127\.0\.0\.1:\d+$/);
    expect(lines[1]).toMatch(/^S: 220 mx\.example\.com ESMTP Haraka/);
    const after = (command: string, from = 0) => lines[lines.indexOf(`C: ${command}`, from) + 1];
    expect(after('RCPT TO:<x@elsewhere.org>')).toBe('S: 554 5.7.1 <x@elsewhere.org>: Relay access denied');
    expect(after('RCPT TO:<b@example.com>')).toMatch(/^S: 250 /);
    expect(after('Subject: hello')).toMatch(/^S: 250 Message Queued/);
    // The second conversation: a HELO that claims to be us, refused at RCPT by the check named.
    const second = lines.indexOf('C: EHLO localhost');
    expect(second).toBeGreaterThan(0);
    expect(after('RCPT TO:<b@example.com>', second)).toMatch(
      /^S: 550 5\.7\.1 <localhost>: Helo command rejected: You are not me \(helo-claims-us; help: https:\/\/example\.com\/mail-help\)$/,
    );
    expect(lines.at(-1)).toMatch(/^S: 221 /);
  });

  it('test: the example unit test (fake resolver, manual clock) passes under vitest', () => {
    const out = example('test');
    expect(out).toMatch(/policy\.test\.ts \(3 tests\)/);
    expect(out).toMatch(/Tests\s+3 passed/);
  });
});
