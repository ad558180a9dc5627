/**
 * `--log-trace`: the decision line of `mxguard policy` and `mxguard serve` (real processes) carries
 * by default only the trace steps that said something, with `steps`, how many links ran; with
 * `--log-trace full` every step. A SIGHUP keeps the flag; the text format and the privacy levels
 * apply to what is left.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { askPolicy, mxguardBin, type Running, startMxguard, swaksAsync } from '../../../testing/mxguard.js';
import { rcptRequest } from '../../../testing/postfix.js';

const dir = mkdtempSync(join(tmpdir(), 'mxguard-log-trace-'));
const config = join(dir, 'config.json');
writeFileSync(config, JSON.stringify({ ourDomains: ['example.com'], ourHosts: ['mx.example.com'] }));
const running: Running[] = [];
afterAll(async () => {
  await Promise.all(running.map((r) => r.stop()));
});
async function start(command: 'serve' | 'policy', args: string[]): Promise<Running> {
  const r = await startMxguard(command, ['--offline', '--config', config, ...args]);
  running.push(r);
  return r;
}

interface Step {
  check: string;
  action: string;
  reason?: string;
}
interface Line {
  session: string;
  stage: string;
  steps: number;
  trace: Step[];
  [k: string]: unknown;
}

/** The decision lines a process wrote on stderr so far. */
const decisions = (r: Running): Line[] =>
  r
    .stderr()
    .split('\n')
    .filter((l) => l.includes('"msg":"decision"'))
    .map((l) => JSON.parse(l) as Line);

/** A HELO that claims to be us: refused by helo-claims-us. */
const claimsUs = (instance: string) =>
  rcptRequest({ helo_name: 'localhost', client_address: '203.0.113.9', instance });
/** An ordinary client: nothing to say, DUNNO. */
const ordinary = (instance: string) => rcptRequest({ client_address: '203.0.113.10', instance });

describe('mxguard policy --log-trace', () => {
  it('by default: only the steps that said something, and how many links ran', async () => {
    const p = await start('policy', []);
    expect(await askPolicy(p.port, [claimsUs('s.1'), ordinary('s.2')])).toEqual([
      expect.stringMatching(/^550 5\.7\.1 /),
      'DUNNO',
    ]);
    await p.waitLog(/"session":"s\.2"/);
    const [refused, quiet] = decisions(p);
    // The recommended preset ran several links before helo-claims-us refused; the line shows it alone.
    expect(refused).toMatchObject({ session: 's.1', action: 'reject', check: 'helo-claims-us' });
    expect(refused?.steps).toBeGreaterThan(3);
    expect(refused?.trace.map((s) => `${s.check}:${s.action}`)).toEqual(['helo-claims-us:reject']);
    // Nothing said anything: no step, but the 25 links of the preset are counted.
    expect(quiet).toMatchObject({ session: 's.2', action: 'next', steps: 25, trace: [] });
  });

  it('--log-trace full: every step, the offline stubs included', async () => {
    const p = await start('policy', ['--log-trace', 'full']);
    await askPolicy(p.port, [claimsUs('f.1'), ordinary('f.2')]);
    await p.waitLog(/"session":"f\.2"/);
    const [refused, quiet] = decisions(p);
    expect(refused?.trace).toHaveLength(refused?.steps as number);
    expect(refused?.trace.at(-1)).toMatchObject({ check: 'helo-claims-us', action: 'reject' });
    expect(quiet?.steps).toBe(25);
    expect(quiet?.trace).toHaveLength(25);
    expect(quiet?.trace.find((s) => s.check === 'dnsbl')).toMatchObject({
      action: 'next',
      reason: 'skipped: offline (no DNS)',
    });
  });

  it('a step kept for its findings is rewritten by --log-privacy like the rest of the line', async () => {
    const p = await start('policy', ['--log-privacy', 'truncate']);
    // A HELO address literal that is not the client's: helo-literal-mismatch scores it, naming both.
    await askPolicy(p.port, [
      rcptRequest({ helo_name: '[198.51.100.8]', client_address: '203.0.113.9', instance: 'p.1' }),
    ]);
    await p.waitLog(/"session":"p\.1"/);
    const [line] = decisions(p);
    const step = line?.trace.find((s) => s.check === 'helo-literal-mismatch');
    expect(step?.reason).toMatch(/203\.0\.113\.0\/24/);
    expect(line?.trace.every((s) => s.action !== 'next' || 'findings' in s)).toBe(true);
    expect(p.stderr()).not.toMatch(/203\.0\.113\.9/);
  });

  it('--log-format text shows the count and the same steps', async () => {
    const p = await start('policy', ['--log-format', 'text']);
    await askPolicy(p.port, [claimsUs('t.1')]);
    expect(await p.waitLog(/t\.1: reject/)).toMatch(
      / check=helo-claims-us reason=".*" steps=\d+ trace=helo-claims-us:reject$/,
    );
    const full = await start('policy', ['--log-format', 'text', '--log-trace', 'full']);
    await askPolicy(full.port, [claimsUs('t.2')]);
    const line = await full.waitLog(/t\.2: reject/);
    const [, steps, trace] = / steps=(\d+) trace=(\S+)$/.exec(line) ?? [];
    expect(trace?.split(',')).toHaveLength(Number(steps));
    expect(trace).toMatch(/^reputation:next,.*,helo-claims-us:reject$/);
  });

  it('refuses a value it does not know, naming the choices', () => {
    const c = spawnSync(process.execPath, [mxguardBin, 'policy', '--offline', '--log-trace', 'all'], {
      encoding: 'utf8',
      timeout: 30_000,
    });
    expect(c.status).toBe(2);
    expect(c.stderr).toMatch(
      /--log-trace <trace>' argument 'all' is invalid\. Allowed choices are said, full/,
    );
  });
});

describe('mxguard serve --log-trace', () => {
  const refusedRcpt = (r: Running, from: string) =>
    swaksAsync(r.address, [
      '--helo',
      'localhost',
      '--from',
      from,
      '--to',
      'bob@example.com',
      '--quit-after',
      'RCPT',
    ]);
  const rcptOf = (r: Running, from: string) =>
    decisions(r).find((d) => d.stage === 'rcpt' && d.from === from);

  it('by default the said steps; with full every step, before and after a SIGHUP', async () => {
    const said = await start('serve', ['--spool', join(dir, 'spool-said')]);
    expect(await refusedRcpt(said, 'a1@example.net')).toMatch(/<\*\*\s+550 5\.7\.1 /);
    await said.waitLog(/"stage":"rcpt".*"from":"a1@example\.net"/);
    const one = rcptOf(said, 'a1@example.net');
    expect(one?.steps).toBeGreaterThan(3);
    expect(one?.trace.map((s) => s.check)).toEqual(['helo-claims-us']);

    const full = await start('serve', ['--spool', join(dir, 'spool-full'), '--log-trace', 'full']);
    expect(await refusedRcpt(full, 'b1@example.net')).toMatch(/<\*\*\s+550 5\.7\.1 /);
    await full.waitLog(/"stage":"rcpt".*"from":"b1@example\.net"/);
    const before = rcptOf(full, 'b1@example.net');
    expect(before?.trace).toHaveLength(before?.steps as number);
    expect(before?.trace.length).toBeGreaterThan(3);

    // A SIGHUP builds the gateway's options again: the flag is kept.
    full.child.kill('SIGHUP');
    await full.waitLog(/"event":"reloaded"/);
    expect(await refusedRcpt(full, 'b2@example.net')).toMatch(/<\*\*\s+550 5\.7\.1 /);
    await full.waitLog(/"stage":"rcpt".*"from":"b2@example\.net"/);
    const after = rcptOf(full, 'b2@example.net');
    expect(after?.trace).toHaveLength(after?.steps as number);
    expect(after?.trace.map((s) => s.check)).toEqual(before?.trace.map((s) => s.check));
  });
});
