import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { askPolicy, mxguardBin, type Running, startMxguard, swaksAsync } from '../../../testing/mxguard.js';
import { rcptRequest } from '../../../testing/postfix.js';
import { textLine } from '../src/logging.js';
import { Redactor, truncateIp } from '../src/privacy.js';

// Logs an admin can read: one decision line for serve and policy, JSON or a Postfix-like text
// line, to stderr or a file, with addresses kept, truncated or hashed.
const dir = mkdtempSync(join(tmpdir(), 'mxguard-logging-'));
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
/** A HELO that claims to be us: refused by helo-claims-us with 550 5.7.1. */
const claimsUs = (over: Record<string, string> = {}) =>
  rcptRequest({ helo_name: 'localhost', client_address: '203.0.113.9', instance: 'abc.1', ...over });

const DECISION_KEYS = ['level', 'time', 'msg', 'event', 'session', 'stage', 'client', 'helo', 'from', 'to'];

describe('one decision line for serve and policy', () => {
  it('policy: JSON with time, session, deciding check, reply and trace', async () => {
    const p = await start('policy', []);
    expect(await askPolicy(p.port, [claimsUs()])).toEqual([expect.stringMatching(/^550 5\.7\.1 /)]);
    const line = JSON.parse(await p.waitLog(/"msg":"decision"/)) as Record<string, unknown>;
    expect(line).toMatchObject({
      level: 'info',
      msg: 'decision',
      event: 'decision',
      session: 'abc.1',
      stage: 'rcpt',
      client: '203.0.113.9',
      helo: 'localhost',
      from: 'alice@example.net',
      to: 'bob@example.com',
      action: 'reject',
      code: 550,
      enhanced: '5.7.1',
      check: 'helo-claims-us',
    });
    expect(Date.parse(line.time as string)).toBeGreaterThan(Date.parse('2026-01-01'));
    expect(line.text).toMatch(/\(helo-claims-us\)$/);
    expect((line.trace as { check: string }[]).map((s) => s.check)).toContain('helo-claims-us');
    for (const k of DECISION_KEYS) expect(line, k).toHaveProperty(k);

    // serve writes the same line, its session being the SMTP connection.
    const s = await start('serve', ['--spool', join(dir, 'spool')]);
    spawnSync(
      'swaks',
      [
        '--server',
        s.address,
        '--helo',
        'localhost',
        '--from',
        'alice@example.net',
        '--to',
        'bob@example.com',
        '--timeout',
        '10',
      ],
      { timeout: 20_000 },
    );
    const served = JSON.parse(await s.waitLog(/"stage":"rcpt".*"msg":"decision"/)) as Record<string, unknown>;
    expect(served).toMatchObject({ action: 'reject', code: 550, check: 'helo-claims-us', helo: 'localhost' });
    for (const k of DECISION_KEYS) expect(served, k).toHaveProperty(k);
    expect(Object.keys(served).filter((k) => k !== 'cid')).toEqual(
      Object.keys(line).filter((k) => k !== 'conn'),
    );
  });

  it('--log-format text --log-file: one Postfix-like line a decision, in the file', async () => {
    const file = join(dir, 'log', 'mxguard.log');
    const p = await start('policy', ['--log-format', 'text', '--log-file', file]);
    await askPolicy(p.port, [claimsUs({ instance: 'txt.2' })]);
    let text = '';
    for (let i = 0; i < 100 && !text.includes('txt.2'); i++) {
      await new Promise((r) => setTimeout(r, 100));
      text = readFileSync(file, 'utf8');
    }
    expect(text).toMatch(
      /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z mxguard\/policy\[\d+\]: txt\.2: reject: RCPT from \[203\.0\.113\.9\]: 550 5\.7\.1 .*\(helo-claims-us\); from=<alice@example\.net> to=<bob@example\.com> helo=<localhost> check=helo-claims-us reason=".*" steps=\d+ trace=helo-claims-us:reject$/m,
    );
    expect(text).toMatch(/mxguard\/policy\[\d+\]: info: policy server listening/);
    expect(p.stderr()).toBe('');
  });
});

describe('--log-privacy', () => {
  it('truncate keeps the client network and the mail domains', async () => {
    const p = await start('policy', ['--log-privacy', 'truncate']);
    await askPolicy(p.port, [claimsUs()]);
    const line = JSON.parse(await p.waitLog(/"msg":"decision"/)) as Record<string, unknown>;
    expect(line).toMatchObject({ client: '203.0.113.0/24', from: '*@example.net', to: '*@example.com' });
    expect(p.stderr()).not.toMatch(/203\.0\.113\.9|alice@|bob@/);
  });

  it('hash: the same sender is the same token, and neither the client nor a local part is in the log', async () => {
    const p = await start('policy', ['--log-privacy', 'hash']);
    await askPolicy(p.port, [claimsUs({ instance: 'h.1' }), claimsUs({ instance: 'h.2' })]);
    await p.waitLog(/"session":"h\.2"/);
    const lines = p
      .stderr()
      .split('\n')
      .filter((l) => l.includes('"msg":"decision"'))
      .map((l) => JSON.parse(l) as Record<string, string>);
    expect(lines).toHaveLength(2);
    expect(lines[0]!.from).toMatch(/^h:[0-9a-f]{12}@example\.net$/);
    expect(lines[0]!.client).toMatch(/^h:[0-9a-f]{12}$/);
    expect(lines[1]!.from).toBe(lines[0]!.from);
    expect(p.stderr()).not.toMatch(/203\.0\.113\.9|alice@|bob@/);
  });

  it('each level on its own', () => {
    expect(truncateIp('192.0.2.77')).toBe('192.0.2.0/24');
    expect(truncateIp('2001:db8:1:2::99')).toBe('2001:db8:1::/48');
    expect(truncateIp('2001:0db8::1')).toBe('2001:db8:0::/48');
    const full = new Redactor('full');
    const rec = {
      client: '192.0.2.77',
      from: 'a@b.example',
      to: 'c@d.example',
      reason: 'client 192.0.2.77 sent a@b.example',
    };
    expect(full.record(rec)).toBe(rec);
    expect(new Redactor('truncate').record(rec)).toEqual({
      client: '192.0.2.0/24',
      from: '*@b.example',
      to: '*@d.example',
      reason: 'client 192.0.2.0/24 sent *@b.example',
    });
    const h = new Redactor('hash', Buffer.alloc(32));
    const r = h.record(rec);
    expect(r.reason).toBe(`client ${r.client} sent ${r.from}`);
    expect(h.address('')).toBe('');
    expect(new Redactor('hash', Buffer.alloc(32, 1)).record(rec).client).not.toBe(r.client);
  });

  it('hash: a remembered hash is the one computed afresh, whatever the case, and long values too', () => {
    const h = new Redactor('hash', Buffer.alloc(32, 2));
    const long = `${'x'.repeat(300)}@b.example`;
    const first = [h.hash('Alice'), h.hash('alice'), h.hash(long)];
    // 5,000 other values push the first ones out of the remembered hashes.
    for (let i = 0; i < 5000; i++) h.hash(`user${i}`);
    const again = [h.hash('Alice'), h.hash('alice'), h.hash(long)];
    const fresh = new Redactor('hash', Buffer.alloc(32, 2));
    expect(again).toEqual(first);
    expect(first).toEqual([fresh.hash('alice'), fresh.hash('ALICE'), fresh.hash(long)]);
    expect(first[0]).toMatch(/^h:[0-9a-f]{12}$/);
    expect(h.hash('user1')).not.toBe(h.hash('user2'));
  });
});

it('textLine: a line that is not a decision keeps its fields as key=value', () => {
  const l = textLine(
    '{"level":"warn","time":"2026-12-01T00:00:00.000Z","pid":7,"store":"greylist","msg":"store down"}',
    'mxguard/serve',
  );
  expect(l).toBe('2026-12-01T00:00:00.000Z mxguard/serve[7]: warn: store down store=greylist\n');
});

describe('"mode": "warn" is a dry run: judged and logged as would-reject, nothing refused', () => {
  it('policy answers DUNNO and logs what it would have answered', async () => {
    const warn = join(dir, 'warn.json');
    writeFileSync(warn, JSON.stringify({ ourDomains: ['example.com'], mode: 'warn' }));
    const r = await startMxguard('policy', ['--offline', '--config', warn]);
    running.push(r);
    expect(r.stdout()).toMatch(/note: mode warn: a dry run/);
    expect(await askPolicy(r.port, [claimsUs()])).toEqual(['DUNNO']);
    const line = JSON.parse(await r.waitLog(/"msg":"decision"/)) as Record<string, unknown>;
    expect(line).toMatchObject({ action: 'next', would: 'reject', code: 550, check: 'helo-claims-us' });
  });

  it('serve accepts the message a HELO claiming to be us would have had refused', async () => {
    const warn = join(dir, 'warn.json');
    const r = await startMxguard('serve', [
      '--offline',
      '--config',
      warn,
      '--spool',
      join(dir, 'spool-warn'),
      '--log-format',
      'text',
    ]);
    running.push(r);
    const out = spawnSync(
      'swaks',
      [
        '--server',
        r.address,
        '--helo',
        'localhost',
        '--from',
        'alice@example.net',
        '--to',
        'bob@example.com',
        '--timeout',
        '10',
      ],
      { encoding: 'utf8', timeout: 20_000 },
    ).stdout;
    expect(out).toMatch(/<-\s+250 .*queued as/i);
    expect(await r.waitLog(/would reject \(mode warn\): RCPT/)).toMatch(/550 5\.7\.1 .*check=helo-claims-us/);
  });

  it('a mode that is neither is refused', () => {
    const bad = join(dir, 'bad-mode.json');
    writeFileSync(bad, JSON.stringify({ mode: 'dry' }));
    const c = spawnSync(process.execPath, [mxguardBin, 'check', '--offline', '--config', bad], {
      encoding: 'utf8',
      input: '',
    });
    expect(c.status).toBe(2);
    expect(c.stderr).toMatch(/config\.mode: .*"enforce".*"warn"/);
  });
});

// --log-trace: the decision line carries by default only the trace steps that said something, with
// `steps`, how many links ran; with `--log-trace full` every step. A SIGHUP keeps the flag; the
// text format and the privacy levels apply to what is left.
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

/** An ordinary client: nothing to say, DUNNO. */
const ordinary = (instance: string) => rcptRequest({ client_address: '203.0.113.10', instance });

describe('mxguard policy --log-trace', () => {
  it('by default: only the steps that said something, and how many links ran', async () => {
    const p = await start('policy', []);
    expect(await askPolicy(p.port, [claimsUs({ instance: 's.1' }), ordinary('s.2')])).toEqual([
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
    await askPolicy(p.port, [claimsUs({ instance: 'f.1' }), ordinary('f.2')]);
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
    await askPolicy(p.port, [claimsUs({ instance: 't.1' })]);
    expect(await p.waitLog(/t\.1: reject/)).toMatch(
      / check=helo-claims-us reason=".*" steps=\d+ trace=helo-claims-us:reject$/,
    );
    const full = await start('policy', ['--log-format', 'text', '--log-trace', 'full']);
    await askPolicy(full.port, [claimsUs({ instance: 't.2' })]);
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
