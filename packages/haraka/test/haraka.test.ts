import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort } from '../../../testing/net.js';
import { TestDnsServer } from '../../dns/test/helpers/dns-server.js';
import { RawClient } from '../../smtp/test/helpers.js';

// A real Haraka (the root devDependency) on loopback, with this plugin loaded the way an operator
// installs it (node_modules/haraka-plugin-mxguard in Haraka's directory, `mxguard` in
// config/plugins), driven with swaks.

const pluginDir = fileURLToPath(new URL('../', import.meta.url));
const root = fileURLToPath(new URL('../../../', import.meta.url));
const harakaBin = join(root, 'node_modules', 'Haraka', 'bin', 'haraka');
const cliDist = join(root, 'packages', 'cli', 'dist', 'index.js');

// The plugin as Haraka loads it: require() of the package directory.
const plugin = createRequire(import.meta.url)(pluginDir) as typeof import('../index.js');

/** One Haraka under test: its directory, process, log so far and `host:port`. */
interface Instance {
  readonly dir: string;
  readonly child: ChildProcess;
  log: string;
  readonly server: string;
}

const tmp = mkdtempSync(join(tmpdir(), 'mxguard-haraka-'));
const instances: Instance[] = [];

/**
 * Lays out an installed Haraka (`haraka -i`, as an operator does: config/connection.ini and the
 * rest), links this package in as node_modules/haraka-plugin-mxguard, writes config/mxguard.json
 * and starts it on a free loopback port. Resolves once it listens and the plugin's runtime is built.
 */
async function startHaraka(
  name: string,
  mxguard: object | string,
  smtpIni = '',
  ready = '[mxguard] checks:',
  localPlugins: Record<string, string> = {},
): Promise<Instance> {
  const dir = join(tmp, name);
  const install = spawnSync(process.execPath, [harakaBin, '-i', dir], { encoding: 'utf8', timeout: 30_000 });
  if (install.status !== 0) throw new Error(`haraka -i failed: ${install.stdout}${install.stderr}`);
  mkdirSync(join(dir, 'node_modules'), { recursive: true });
  symlinkSync(pluginDir, join(dir, 'node_modules', 'haraka-plugin-mxguard'), 'dir');
  const config = join(dir, 'config');
  writeFileSync(join(config, 'me'), 'mx.example.com\n');
  // Local plugins of the test (Haraka's plugins/ folder) run before mxguard.
  mkdirSync(join(dir, 'plugins'), { recursive: true });
  for (const [n, source] of Object.entries(localPlugins))
    writeFileSync(join(dir, 'plugins', `${n}.js`), source);
  writeFileSync(
    join(config, 'plugins'),
    [...Object.keys(localPlugins), 'mxguard', 'queue/discard'].map((p) => `${p}\n`).join(''),
  );
  writeFileSync(join(config, 'log.ini'), '[main]\nlevel=info\n');
  writeFileSync(
    join(config, 'mxguard.json'),
    typeof mxguard === 'string' ? mxguard : JSON.stringify(mxguard),
  );
  const port = await freePort();
  writeFileSync(join(config, 'smtp.ini'), `listen=127.0.0.1:${port}\n${smtpIni}`);
  const child = spawn(process.execPath, [harakaBin, '-c', dir], {
    cwd: dir,
    // queue/discard accepts (250) and drops the message: this is a test, nothing is delivered.
    env: { ...process.env, YES_REALLY_DO_DISCARD: '1', NODE_NO_WARNINGS: '1' },
    stdio: ['ignore', 'pipe', 'pipe'],
    // Its own process group, so that stopping it reaches the cluster worker too (as Ctrl-C does).
    detached: true,
  });
  const h: Instance = { dir, child, log: '', server: `127.0.0.1:${port}` };
  instances.push(h);
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`Haraka did not start:\n${h.log}`)), 30_000);
    const onData = (b: Buffer) => {
      h.log += b.toString();
      if (h.log.includes(`Listening on 127.0.0.1:${port}`) && h.log.includes(ready)) {
        clearTimeout(timer);
        resolve();
      }
    };
    child.stdout?.on('data', onData);
    child.stderr?.on('data', onData);
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`Haraka exited ${code}:\n${h.log}`));
    });
  });
  return h;
}

/** The instance's log as soon as it matches `re` (Haraka's logger writes asynchronously), or after 10 s. */
async function logMatching(h: Instance, re: RegExp): Promise<string> {
  for (let i = 0; i < 200 && !re.test(h.log); i++) await new Promise((r) => setTimeout(r, 50));
  return h.log;
}

function swaksTo(h: Instance, args: string[]): string {
  const r = spawnSync('swaks', ['--server', h.server, '--timeout', '10', ...args], {
    encoding: 'utf8',
    timeout: 20_000,
  });
  return `${r.stdout}${r.stderr}`;
}

let main: Instance;
const swaks = (args: string[]) => swaksTo(main, args);

beforeAll(async () => {
  if (!existsSync(cliDist)) throw new Error(`build first (pnpm build): ${cliDist} is missing`);
  // smtp.ini's default: a cluster master and one worker (the plugin builds its runtime in init_child).
  main = await startHaraka('main', { ourDomains: ['example.com'], offline: true });
});

afterAll(async () => {
  for (const h of instances) {
    const child = h.child;
    if (child.exitCode !== null || child.signalCode !== null) continue;
    const gone = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    // SIGINT is Haraka's stop signal (it leaves SIGTERM alone unless it is PID 1); sent to the
    // group this test started, so master and worker both stop.
    const signal = (sig: NodeJS.Signals) => {
      try {
        process.kill(-(child.pid ?? 0), sig);
      } catch {
        // The group is already gone.
      }
    };
    signal('SIGINT');
    const timer = setTimeout(() => signal('SIGKILL'), 5000);
    await gone;
    clearTimeout(timer);
  }
  rmSync(tmp, { recursive: true, force: true });
});

describe('haraka-plugin-mxguard in a real Haraka', () => {
  it('loads, builds the policy offline and says which checks run', async () => {
    expect(main.log).toMatch(/\[mxguard\] checks: .*helo-claims-us/);
    const re = /\[mxguard\] note: offline: DNS checks skipped/;
    expect(await logMatching(main, re)).toMatch(re);
  });

  it('accepts clean mail for our domain: 250 after DATA', async () => {
    const out = swaks([
      '--helo',
      'mail.example.net',
      '--from',
      'alice@example.net',
      '--to',
      'postmaster@example.com',
    ]);
    expect(out).toMatch(/<-\s+250 .*recipient <postmaster@example\.com> OK/);
    expect(out).toMatch(/<-\s+250 .*Message Queued/);
    // Haraka's reverse-DNS step was answered by the plugin (offline: no lookup, "Unknown"), so
    // Haraka never asked the system resolver.
    expect(out).toMatch(/<-\s+250-\S+ Hello Unknown \[127\.0\.0\.1\]/);
    const re =
      /"time":"[\d-]+T[\d:.]+Z","msg":"decision","event":"decision","session":"[\w.-]+","stage":"data","client":"127\.0\.0\.1".*"action":"next"/;
    expect(await logMatching(main, re)).toMatch(re);
  });

  it('a HELO that claims to be us is refused at RCPT with 550 5.7.1 and the check named', async () => {
    const out = swaks([
      '--helo',
      'localhost',
      '--from',
      'a@example.net',
      '--to',
      'postmaster@example.com',
      '--quit-after',
      'RCPT',
    ]);
    expect(out).toMatch(
      /<\*\*\s+550 5\.7\.1 <localhost>: Helo command rejected: You are not me \(helo-claims-us\)/,
    );
    const re = /"stage":"rcpt".*"action":"reject","code":550,"enhanced":"5\.7\.1","check":"helo-claims-us"/;
    expect(await logMatching(main, re)).toMatch(re);
  });

  it('refuses to relay: 554 5.7.1 Relay access denied', () => {
    const out = swaks([
      '--helo',
      'mail.example.net',
      '--from',
      'a@example.net',
      '--to',
      'x@elsewhere.org',
      '--quit-after',
      'RCPT',
    ]);
    expect(out).toMatch(/<\*\*\s+554 5\.7\.1 <x@elsewhere\.org>: Relay access denied/);
  });

  it('a sender that is not fully qualified is refused at RCPT (delay-reject) with 504 5.5.2', () => {
    const out = swaks([
      '--helo',
      'mail.example.net',
      '--from',
      'a@localhost',
      '--to',
      'postmaster@example.com',
      '--quit-after',
      'RCPT',
    ]);
    // MAIL is accepted: with delay-reject the sender's links are judged at RCPT, as Postfix does.
    expect(out).toMatch(/<-\s+250 .*sender <a@localhost> OK/);
    expect(out).toMatch(
      /<\*\*\s+504 5\.5\.2 <a@localhost>: Sender address rejected: need fully-qualified address/,
    );
  });
});

/** The decision lines of an instance's log whose sender is `from`, parsed. */
function decisionsFrom(h: Instance, from: string): Record<string, unknown>[] {
  return h.log
    .split('\n')
    .filter((l) => l.includes('"msg":"decision"') && l.includes(`"from":"${from}"`))
    .map((l) => JSON.parse(l.slice(l.indexOf('{'))) as Record<string, unknown>);
}

describe('the decision line\'s trace ("logTrace")', () => {
  const refusedAtRcpt = (h: Instance, from: string) =>
    swaksTo(h, [
      '--helo',
      'localhost',
      '--from',
      from,
      '--to',
      'postmaster@example.com',
      '--quit-after',
      'RCPT',
    ]);

  it('by default carries only the steps that said something, and how many links ran', async () => {
    expect(refusedAtRcpt(main, 'said@example.net')).toMatch(/<\*\*\s+550 5\.7\.1/);
    await logMatching(
      main,
      /"from":"said@example\.net".*"stage":"rcpt"|"stage":"rcpt".*"from":"said@example\.net"/,
    );
    const rcpt = decisionsFrom(main, 'said@example.net').find((d) => d.stage === 'rcpt');
    expect(rcpt).toMatchObject({ action: 'reject', check: 'helo-claims-us' });
    const trace = rcpt?.trace as { check: string; action: string }[];
    // The recommended preset runs a dozen links before helo-claims-us refuses; the line shows the one.
    expect(rcpt?.steps).toBeGreaterThan(1);
    expect(trace).toEqual([expect.objectContaining({ check: 'helo-claims-us', action: 'reject' })]);
  });

  it('"logTrace": "full" carries every step', async () => {
    const full = await startHaraka(
      'trace-full',
      { ourDomains: ['example.com'], offline: true, logTrace: 'full' },
      'nodes=0\n',
    );
    expect(refusedAtRcpt(full, 'full@example.net')).toMatch(/<\*\*\s+550 5\.7\.1/);
    await logMatching(
      full,
      /"from":"full@example\.net".*"stage":"rcpt"|"stage":"rcpt".*"from":"full@example\.net"/,
    );
    const rcpt = decisionsFrom(full, 'full@example.net').find((d) => d.stage === 'rcpt');
    const trace = rcpt?.trace as { check: string; action: string }[];
    expect(rcpt?.steps).toBeGreaterThan(1);
    expect(trace).toHaveLength(rcpt?.steps as number);
    expect(trace.filter((s) => s.action === 'next').length).toBe(trace.length - 1);
    expect(trace.at(-1)).toMatchObject({ check: 'helo-claims-us', action: 'reject' });
  });

  it('stops Haraka at start for a "logTrace" it does not know', async () => {
    await expect(
      startHaraka(
        'trace-bad',
        { ourDomains: ['example.com'], offline: true, logTrace: 'everything' },
        'nodes=0\n',
      ),
    ).rejects.toThrow(/Haraka exited 1:[\s\S]*"logTrace" must be "said"/);
  });
});

describe('the data stage, in a single-process Haraka (nodes=0)', () => {
  let data: Instance;
  beforeAll(async () => {
    // A non-FQDN HELO only scores at RCPT; the points are carried to DATA, where a data-stage weigh
    // refuses the message. `received` (offline) shows the header block reached the chain: its
    // `next` step is in the decision line with the full trace.
    data = await startHaraka(
      'data',
      {
        ourDomains: ['example.com'],
        offline: true,
        logTrace: 'full',
        checks: [
          'relay',
          { name: 'helo-fqdn', action: 'score', score: 3 },
          { name: 'received', lists: ['bl.example.org'] },
          { name: 'weigh', stage: 'data', reject: 3 },
        ],
      },
      'nodes=0\n',
    );
  });

  it("carries the accepted recipient's scored findings to DATA, refused there with the weigh code", async () => {
    const out = swaksTo(data, [
      '--helo',
      'foo',
      '--from',
      'alice@example.net',
      '--to',
      'postmaster@example.com',
    ]);
    expect(out).toMatch(/<-\s+250 .*recipient <postmaster@example\.com> OK/);
    expect(out).toMatch(/<\*\*\s+554 5\.7\.1 .*\(weigh-data\)/);
    const re =
      /"stage":"data".*"action":"reject","code":554,"enhanced":"5\.7\.1","check":"weigh-data","reason":"score 3 \(helo-fqdn:no-dot=3\)/;
    expect(await logMatching(data, re)).toMatch(re);
    // The header block was handed over: offline, `received` got as far as wanting a resolver.
    expect(data.log).toMatch(
      /"check":"received","action":"next","ms":[\d.]+,"reason":"skipped: no resolver"/,
    );
  });

  it('a FQDN HELO scores nothing: the same message is accepted', () => {
    const out = swaksTo(data, [
      '--helo',
      'mail.example.net',
      '--from',
      'alice@example.net',
      '--to',
      'postmaster@example.com',
    ]);
    expect(out).toMatch(/<-\s+250 .*Message Queued/);
  });
});

describe('a config that does not say what its author meant', () => {
  it('stops Haraka at start, saying where and the nearest known name', async () => {
    await expect(
      startHaraka(
        'bad-key',
        { ourDomain: ['example.com'], ourDomains: ['example.com'], offline: true },
        'nodes=0\n',
      ),
    ).rejects.toThrow(/Haraka exited 1:[\s\S]*config\.ourDomain: unknown key; did you mean "ourDomains"\?/);
  });

  it('stops Haraka at start for a check that cannot be built (received without its lists)', async () => {
    await expect(
      startHaraka(
        'broken',
        { ourDomains: ['example.com'], offline: true, checks: ['relay', 'received'] },
        'nodes=0\n',
      ),
    ).rejects.toThrow(/Haraka exited 1:[\s\S]*config\.checks\[1\]: "received" needs options \(lists\)/);
  });

  it('a config/mxguard.json that is not valid JSON stops Haraka at start, saying why', async () => {
    await expect(startHaraka('bad-json', '{"ourDomains": ["example.com"],', 'nodes=0\n')).rejects.toThrow(
      /Haraka exited 1:[\s\S]*mxguard: config\/mxguard\.json needs "ourDomains"/,
    );
  });
});

describe('the mapping to Haraka', () => {
  it('puts the verdict code and enhanced code in a DSN, DENY for 5xx and DENYSOFT for 4xx', () => {
    const [deny, dsn] = plugin._internals.haraka({ code: 554, enhanced: '5.7.1', text: 'no' });
    expect([deny, dsn.code, dsn.reply]).toEqual([902, 554, '5.7.1 no']);
    const [soft, dsn2] = plugin._internals.haraka({ code: 450, enhanced: '4.2.0', text: 'Greylisted' });
    expect([soft, dsn2.code, dsn2.reply]).toEqual([903, 450, '4.2.0 Greylisted']);
    const [disc] = plugin._internals.haraka({ code: 421, enhanced: '4.7.0', text: 'bye' });
    expect(disc).toBe(909);
  });

  it('refuses a config that is not an object, names no ourDomains, or has offline with a resolver', () => {
    expect(() => plugin._internals.settingsOf([1])).toThrow(/JSON object/);
    expect(() => plugin._internals.settingsOf({ offline: true, resolver: '127.0.0.1:53' })).toThrow(
      /exclude/,
    );
    // haraka-config gives {} for a missing file and for one that is not valid JSON.
    expect(() => plugin._internals.settingsOf({})).toThrow(/needs "ourDomains"/);
    expect(() => plugin._internals.settingsOf({ offline: true })).toThrow(/needs "ourDomains"/);
    expect(plugin._internals.settingsOf({ offline: true, ourDomains: ['example.com'] })).toEqual({
      policy: { ourDomains: ['example.com'] },
      offline: true,
      resolver: undefined,
      logTrace: 'said',
    });
  });

  it('"logTrace" is "said" or "full"; anything else is refused, saying what it may be', () => {
    const base = { ourDomains: ['example.com'] };
    expect(plugin._internals.settingsOf({ ...base, logTrace: 'full' }).logTrace).toBe('full');
    expect(plugin._internals.settingsOf({ ...base, logTrace: 'said' }).logTrace).toBe('said');
    expect(plugin._internals.settingsOf(base).logTrace).toBe('said');
    for (const bad of ['Full', 'all', true, 1, null]) {
      expect(() => plugin._internals.settingsOf({ ...base, logTrace: bad })).toThrow(
        /"logTrace" must be "said" \(the steps that said something\) or "full" \(every step\)/,
      );
    }
  });
});

describe('"http": metrics and health in the Haraka process', () => {
  it('serves /metrics with the decisions of real sessions, and /health', async () => {
    const port = await freePort();
    const h = await startHaraka('http', {
      ourDomains: ['example.com'],
      offline: true,
      http: `127.0.0.1:${port}`,
    });
    expect(await logMatching(h, /status: http:\/\/127\.0\.0\.1:\d+\//)).toMatch(
      new RegExp(`\\[mxguard\\] status: http://127\\.0\\.0\\.1:${port}/`),
    );
    const refused = swaksTo(h, ['--helo', 'localhost', '--from', 'a@example.net', '--to', 'b@example.com']);
    expect(refused).toMatch(/<\*\* +550 5\.7\.1 /);
    const metrics = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
    expect(metrics).toMatch(
      /^mxguard_decisions_total\{check="helo-claims-us",action="reject",code="550",stage="rcpt",mode="enforce"\} 1$/m,
    );
    // swaks has gone: no connection open.
    expect(metrics).toMatch(/^mxguard_connections 0$/m);
    const health = await fetch(`http://127.0.0.1:${port}/health`);
    expect(health.status).toBe(200);
    expect(await health.json()).toMatchObject({ status: 'ok', stores: { greylist: 'up', reputation: 'up' } });
  });

  it('refuses a malformed "http" and a non-loopback one without "httpAllowRemote"', () => {
    const base = { ourDomains: ['example.com'], offline: true };
    expect(() => plugin._internals.settingsOf({ ...base, http: 9125 })).toThrow(/"http" must be "HOST:PORT"/);
    expect(() =>
      plugin._internals.settingsOf({ ...base, http: '127.0.0.1:1', httpAllowRemote: 'yes' }),
    ).toThrow(/"httpAllowRemote" must be true or false/);
  });

  it('stops Haraka at start for "http" on an address that is not loopback', async () => {
    await expect(
      startHaraka(
        'http-remote',
        { ourDomains: ['example.com'], offline: true, http: '192.0.2.1:9125' },
        'nodes=0\n',
      ),
    ).rejects.toThrow(/Haraka exited 1:[\s\S]*"http": --http 192\.0\.2\.1:9125: not a loopback address/);
  });
});

describe('an early talker, as Haraka sees it', () => {
  let early: Instance;
  beforeAll(async () => {
    // A test plugin holds the banner until Haraka has seen the client talk (at most 5 s), so the
    // client below is an early talker whatever the machine's speed.
    const holdBanner = `exports.hook_connect = function (next, connection) {
  let waited = 0;
  const tick = () => {
    if (connection.early_talker || waited >= 5000) return next();
    waited += 10;
    setTimeout(tick, 10);
  };
  tick();
};
`;
    early = await startHaraka(
      'early',
      { ourDomains: ['example.com'], offline: true },
      'nodes=0\n',
      undefined,
      {
        hold_banner: holdBanner,
      },
    );
  });

  it("Haraka's early_talker flag reaches the chain: the pipelining check refuses at RCPT", async () => {
    const [host, port] = early.server.split(':');
    const lines: string[] = [];
    const socket = connect({ host, port: Number(port) });
    socket.setEncoding('latin1');
    let buffer = '';
    const waiters: (() => void)[] = [];
    socket.on('data', (d: string) => {
      buffer += d;
      for (let nl = buffer.indexOf('\r\n'); nl >= 0; nl = buffer.indexOf('\r\n')) {
        lines.push(buffer.slice(0, nl));
        buffer = buffer.slice(nl + 2);
      }
      for (const w of waiters.splice(0)) w();
    });
    /** The next final reply line (`NNN text`), skipping continuation lines. */
    let read = 0;
    const reply = async (): Promise<string> => {
      for (;;) {
        while (read < lines.length) {
          const l = lines[read++] as string;
          if (/^\d{3} /.test(l)) return l;
        }
        await new Promise<void>((r) => waiters.push(r));
      }
    };
    // Talks at once, before the banner.
    socket.write('EHLO early.example.net\r\n');
    expect(await reply()).toMatch(/^220 /);
    expect(await reply()).toMatch(/^250 /);
    socket.write('MAIL FROM:<a@example.net>\r\n');
    expect(await reply()).toMatch(/^250 /);
    socket.write('RCPT TO:<postmaster@example.com>\r\n');
    expect(await reply()).toMatch(/^554 5\.5\.0 Error: SMTP protocol violation: talked before the greeting/);
    socket.end('QUIT\r\n');
    const re = /"stage":"rcpt".*"action":"reject","code":554,"enhanced":"5\.5\.0","check":"pipelining"/;
    expect(await logMatching(early, re)).toMatch(re);
  });
});

describe('greylisting through Haraka', () => {
  let grey: Instance;
  beforeAll(async () => {
    // Every client greylisted (mode "all") for one second, so the retry is quick.
    grey = await startHaraka(
      'grey',
      { ourDomains: ['example.com'], offline: true, options: { greylist: { mode: 'all', delay: 1 } } },
      'nodes=0\n',
    );
  });

  it('defers a new triplet with 450 4.2.0 on the wire, and accepts it retried after the delay', async () => {
    const send = () =>
      swaksTo(grey, ['--helo', 'mail.example.net', '--from', 'a@example.net', '--to', 'someone@example.com']);
    const first = Date.now();
    expect(send()).toMatch(/<\*\*\s+450 4\.2\.0 Greylisted, please retry in 1 seconds/);
    await new Promise((r) => setTimeout(r, Math.max(0, first + 1_100 - Date.now())));
    // Retried as an MTA would; one that comes too early is simply greylisted again.
    let retry = send();
    for (let i = 0; i < 5 && !/Message Queued/.test(retry); i += 1) {
      await new Promise((r) => setTimeout(r, 500));
      retry = send();
    }
    expect(retry).toMatch(/<-\s+250 .*recipient <someone@example\.com> OK/);
    expect(retry).toMatch(/<-\s+250 .*Message Queued/);
  });
});

describe('a deadline for every answer, in a real Haraka', () => {
  // Timings bound answers from above only: budget + 250 ms grace + 1000 ms for a loaded machine.
  const BUDGET = 1500;
  const BOUND = BUDGET + 250 + 1000;
  const dns = new TestDnsServer();
  let slow: Instance;
  beforeAll(async () => {
    await dns.start();
    dns.fault = 'drop';
    slow = await startHaraka('deadline', {
      ourDomains: ['example.com'],
      resolver: dns.address,
      budget: BUDGET,
      dnsLists: ['zen.test=127.0.0.[2..11]*3'],
    });
  });
  afterAll(() => dns.stop());

  it('DNS dropping every query: the banner, MAIL and RCPT each within the budget, none a 5xx', async () => {
    const [host, port] = slow.server.split(':');
    const c = await RawClient.open(Number(port), host);
    const timed = async (send?: string) => {
      const started = performance.now();
      const line = send === undefined ? await c.line() : await c.cmd(send);
      return { line, ms: performance.now() - started };
    };
    try {
      // Haraka waits for its reverse-DNS step (answered by the plugin) before the banner.
      const steps = [
        await timed(),
        await timed('EHLO mail.sender.test'),
        await timed('MAIL FROM:<alice@sender.test>'),
        await timed('RCPT TO:<bob@example.com>'),
      ];
      for (const { line, ms } of steps) {
        expect(ms).toBeLessThan(BOUND);
        expect(line).toMatch(/^[24]\d\d[ -]/);
      }
      expect(steps[0]?.line).toMatch(/^220 /);
    } finally {
      c.close();
    }
    // The DNS fault reached the chain as temporary failures: lookups that timed out (the resolver's
    // timeouts are sized to end inside the budget) or, when they queue behind each other, the budget
    // cut short. Which of the two comes first depends on the machine's load, so either is right;
    // the RCPT was still judged and logged.
    const log = await logMatching(slow, /"event":"decision".*"stage":"rcpt"/);
    expect(log).toMatch(/"event":"decision".*"stage":"rcpt"/);
    expect(log).toMatch(/"error":"TIMEOUT"|"event":"budget-exhausted","hook":"(mail|rcpt)"/);
  });

  it("a budget is refused when Haraka's plugin timeout would cut it short", () => {
    expect(plugin._internals.budgetOf({ budget: undefined }, 30)).toBe(10_000);
    expect(plugin._internals.budgetOf({ budget: undefined }, 5)).toBe(3750);
    expect(plugin._internals.budgetOf({ budget: undefined }, 0)).toBe(10_000);
    expect(plugin._internals.budgetOf({ budget: 20_000 }, 30)).toBe(20_000);
    expect(() => plugin._internals.budgetOf({ budget: 29_000 }, 30)).toThrow(/plugin timeout/);
    expect(() => plugin._internals.settingsOf({ ourDomains: ['example.com'], budget: 'soon' })).toThrow(
      /"budget"/,
    );
  });
});
