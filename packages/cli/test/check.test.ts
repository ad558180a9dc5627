import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

// `mxguard check` as a user runs it: the built binary, JSON lines in and out.
const bin = fileURLToPath(new URL('../dist/bin.js', import.meta.url));
const dir = mkdtempSync(join(tmpdir(), 'mxguard-check-'));

function run(lines: unknown[], args: string[] = ['--offline']) {
  const input = lines.map((l) => (typeof l === 'string' ? l : JSON.stringify(l))).join('\n');
  const r = spawnSync(process.execPath, [bin, 'check', ...args], {
    input,
    encoding: 'utf8',
    timeout: 20_000,
  });
  const out = r.stdout
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => JSON.parse(l) as Record<string, unknown>);
  return { status: r.status, out, stderr: r.stderr };
}

function config(obj: unknown): string {
  const p = join(dir, `c${Math.random().toString(36).slice(2)}.json`);
  writeFileSync(p, JSON.stringify(obj));
  return p;
}

const good = {
  ip: '203.0.113.9',
  helo: 'mail.example.net',
  ptr: 'mail.example.net',
  mailFrom: 'a@example.net',
};

describe('mxguard check', () => {
  it('prints one verdict a line, in order, with the deciding check and its codes', () => {
    const { status, out } = run([
      { ...good, helo: 'localhost', rcptTo: 'b@example.com' },
      { ...good, rcptTo: 'b@example.com' },
      { ...good, helo: 'pc', rcptTo: 'b@example.com' },
    ]);
    expect(status).toBe(0);
    expect(out.map((o) => [o.action, o.code, o.enhanced, o.check])).toEqual([
      ['reject', 550, '5.7.1', 'helo-claims-us'],
      ['next', undefined, undefined, undefined],
      // A single-label HELO proves no abuse: a doubt that the selective greylist delays.
      ['defer', 450, '4.2.0', 'greylist'],
    ]);
    expect(String(out[2]?.reason)).toMatch(/doubt: helo-fqdn\/no-dot/);
    expect(out[0]?.text).toContain('(helo-claims-us)');
    const trace = out[1]?.trace as { check: string; action: string; reason?: string }[];
    expect(trace.map((s) => s.check)).toContain('greylist');
  });

  it('offline: DNS checks are skipped and say so in the trace, and the first line carries the notes', () => {
    const { out } = run([{ ...good, rcptTo: 'b@example.com' }]);
    const trace = out[0]?.trace as { check: string; reason?: string }[];
    expect(trace.find((s) => s.check === 'dnsbl')?.reason).toMatch(/offline/);
    expect(trace.find((s) => s.check === 'sender-domain')?.reason).toMatch(/offline/);
    expect(String(out[0]?.notes)).toMatch(/offline/);
  });

  it('a bad line gets an error on its line, the run goes on, and the exit status says so', () => {
    const { status, out } = run([
      '{"ip": "203.0.113.9"',
      { ip: 'not-an-ip' },
      { ...good, rcptTo: 'b@example.com' },
      '[1]',
    ]);
    expect(status).toBe(1);
    expect(out).toHaveLength(4);
    expect(out[0]?.error).toMatch(/^line 1: not JSON/);
    expect(out[1]?.error).toMatch(/^line 2: "ip"/);
    expect(out[2]?.action).toBe('next');
    expect(out[3]?.error).toMatch(/^line 4/);
  });

  it('judges every recipient of a list and reports the most severe', () => {
    const { out } = run([{ ...good, rcptTo: ['b@example.com', 'c@elsewhere.org'] }]);
    expect(out[0]).toMatchObject({ action: 'reject', code: 554, check: 'relay' });
    const rs = out[0]?.recipients as { rcptTo: string; action: string }[];
    expect(rs.map((r) => [r.rcptTo, r.action])).toEqual([
      ['b@example.com', 'next'],
      ['c@elsewhere.org', 'reject'],
    ]);
  });

  it('sessions share state and `time` is their clock: a doubted client is greylisted, then passes on retry', () => {
    const noPtr = {
      ip: '198.51.100.20',
      helo: 'host.example.org',
      ptr: null,
      mailFrom: 'a@example.org',
      rcptTo: 'b@example.com',
    };
    const { out } = run([
      { ...noPtr, time: 1_700_000_000 },
      { ...noPtr, time: 1_700_000_060 },
      { ...noPtr, time: 1_700_000_400 },
    ]);
    expect(out.map((o) => [o.action, o.check])).toEqual([
      ['defer', 'greylist'],
      ['defer', 'greylist'],
      ['next', undefined],
    ]);
    expect(out[0]?.code).toBeGreaterThanOrEqual(400);
    expect(out[0]?.code).toBeLessThan(500);
  });

  it('--config with "checks" runs just those, as smtpd_helo_restrictions = reject_invalid_helo_hostname would', () => {
    const c = config({ checks: ['helo-syntax'] });
    const { out } = run(
      [
        { ...good, helo: 'pc', rcptTo: 'x@nowhere.org' },
        { ...good, helo: 'bad..name', rcptTo: 'b@example.com' },
      ],
      ['--offline', '--config', c],
    );
    expect(out[0]).toMatchObject({ action: 'next' });
    expect((out[0]!.trace as unknown[]).length).toBe(1);
    expect(out[1]).toMatchObject({ action: 'reject', check: 'helo-syntax', code: 501, enhanced: '5.5.2' });
  });

  it('per-check action "warn" logs instead of enforcing', () => {
    const c = config({ checks: [{ name: 'helo-syntax', action: 'warn' }] });
    const { out, stderr } = run(
      [{ ...good, helo: '12345', rcptTo: 'b@example.com' }],
      ['--offline', '--config', c],
    );
    expect(out[0]).toMatchObject({ action: 'next' });
    expect((out[0]!.trace as { warn?: boolean }[])[0]?.warn).toBe(true);
    expect(stderr).toMatch(/"would":"reject"/);
  });

  it('our domains, hosts and help URL come from the config and reach the reply', () => {
    const c = config({
      ourDomains: ['mx.test'],
      ourHosts: ['mail.mx.test'],
      helpUrl: 'https://mx.test/help',
    });
    const { out } = run(
      [{ ...good, helo: 'mail.mx.test', rcptTo: 'b@mx.test' }],
      ['--offline', '--config', c],
    );
    expect(out[0]).toMatchObject({ action: 'reject', check: 'helo-claims-us' });
    expect(out[0]?.text).toContain('https://mx.test/help');
  });

  it('a bad config is refused before any line is read, naming what is wrong', () => {
    const c = config({ checks: ['helo-syntax', 'no-such-check'] });
    const r = run([good], ['--offline', '--config', c]);
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/checks\[1\].*unknown check "no-such-check"/);
    const bad = config({ ourDomains: 'example.com' });
    expect(run([good], ['--offline', '--config', bad]).stderr).toMatch(/ourDomains: must be a list/);
  });

  it('unknown options and commands are usage errors', () => {
    const r = spawnSync(process.execPath, [bin, 'check', '--nope'], { encoding: 'utf8', input: '' });
    expect(r.status).toBe(2);
    const u = spawnSync(process.execPath, [bin, 'frobnicate'], { encoding: 'utf8', input: '' });
    expect(u.status).toBe(2);
    expect(u.stderr).toMatch(/unknown command/);
  });
  it('reoffenders are hit harder: a network with many refusals is deferred at once, and forgiven slowly', () => {
    const bad = (i: number, t: number) => ({
      ip: `198.51.100.${i}`,
      helo: 'localhost',
      ptr: 'x.example.org',
      mailFrom: 'a@example.org',
      rcptTo: 'b@example.com',
      time: t,
    });
    const t0 = 1_700_000_000;
    const lines: unknown[] = Array.from({ length: 16 }, (_, i) => bad(i + 1, t0 + i * 10));
    // A well-behaved host of the same /24 right after, then one of the offenders with a good HELO;
    // both again four days later.
    lines.push({ ...good, ip: '198.51.100.200', rcptTo: 'b@example.com', time: t0 + 200 });
    lines.push({ ...good, ip: '198.51.100.3', rcptTo: 'b@example.com', time: t0 + 300 });
    lines.push({ ...good, ip: '198.51.100.200', rcptTo: 'b@example.com', time: t0 + 4 * 86_400 });
    lines.push({ ...good, ip: '198.51.100.3', rcptTo: 'b@example.com', time: t0 + 4 * 86_400 + 10 });
    const { out } = run(lines);
    expect(out[0]).toMatchObject({ action: 'reject', check: 'helo-claims-us' });
    // Its neighbour never offended: at most doubted (greylisted), never refused by reputation.
    expect(out[16]).toMatchObject({ action: 'defer', code: 450, check: 'greylist' });
    // The offender is deferred at once by its network's record.
    expect(out[17]).toMatchObject({ action: 'defer', code: 450, check: 'reputation' });
    // Four days later both are forgiven.
    expect(out[18]?.check).not.toBe('reputation');
    expect(out[19]?.check).not.toBe('reputation');
  });
});
