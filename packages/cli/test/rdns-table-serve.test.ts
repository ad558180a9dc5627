/**
 * The seed's restriction 12 through `mxguard serve`: a Postfix-format regexp table of dynamic-pool
 * patterns, one config line, and a client whose reverse DNS matches it is greylisted (450 4.2.0),
 * then accepted when it retries. The client's PTR comes from a real nsd on loopback; swaks is the
 * client. The name is one the built-in classifier calls static, so only the admin's table makes it
 * a pool: a client of another name is accepted at once.
 */
import { type ChildProcessWithoutNullStreams, spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Daemon, startNsd } from '../../dns/test/helpers/daemons.js';

const bin = fileURLToPath(new URL('../dist/bin.js', import.meta.url));
const dir = mkdtempSync(join(tmpdir(), 'mxguard-rdns-serve-'));
const spool = join(dir, 'spool');
const table = join(dir, 'dynamic_pools');
let nsd: Daemon;
let child: ChildProcessWithoutNullStreams;
let server = '';
let stderr = '';

const SOA = (o: string) =>
  `$ORIGIN ${o}.\n$TTL 300\n@ SOA ns.${o}. host.${o}. 1 3600 600 86400 300\n@ NS ns.${o}.\nns A 127.0.0.1\n`;

beforeAll(async () => {
  nsd = await startNsd({
    test: `${SOA('test')}
mail A 192.0.2.10
ok MX 10 mail.test.
dest MX 10 mail.test.
gw7.custnet A 127.0.0.1
gw8.othernet A 127.0.0.2
`,
    '0.0.127.in-addr.arpa': `${SOA('0.0.127.in-addr.arpa')}
1 PTR gw7.custnet.test.
2 PTR gw8.othernet.test.
`,
  });
  // The admin's table, in Postfix's regexp_table(5) format, as the seed wrote it for
  // check_client_access: comments, a continuation line, an if/endif block.
  writeFileSync(
    table,
    `# dynamic pools of the region's access providers
if /\\.test$/
/^gw[0-9]+\\.custnet\\.test$/    REJECT dynamic pool of custnet,
    relay through your provider
endif
`,
  );
  const config = join(dir, 'mxguard.json');
  writeFileSync(
    config,
    JSON.stringify({
      ourDomains: ['dest.test'],
      dnsLists: ['bl.test=127.0.0.2'],
      rhsLists: [],
      options: {
        // The one line: the recommended preset's rdns-dynamic (action greylist) reads the table.
        'rdns-dynamic': { patterns: `regexp:${table}` },
        // A one-second greylist so the retry is quick (postgrey's default is 300 s).
        greylist: { delay: 1 },
      },
    }),
  );
  child = spawn(process.execPath, [
    bin,
    'serve',
    '--resolver',
    nsd.address,
    '--config',
    config,
    '--spool',
    spool,
    '--listen',
    '127.0.0.1:0',
  ]);
  child.stderr.on('data', (b: Buffer) => {
    stderr += b.toString();
  });
  let banner = '';
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`gateway did not start: ${banner}${stderr}`)), 45_000);
    child.stdout.on('data', (b: Buffer) => {
      banner += b.toString();
      const m = /listening on (127\.0\.0\.1:\d+)/.exec(banner);
      if (m && banner.includes('try:')) {
        server = m[1] as string;
        clearTimeout(timer);
        resolve();
      }
    });
    child.on('exit', (code) => reject(new Error(`gateway exited ${code}: ${banner}${stderr}`)));
  });
}, 60_000);

afterAll(async () => {
  if (child && child.exitCode === null) {
    const exited = new Promise((r) => child.once('exit', r));
    child.kill('SIGTERM');
    await exited;
  }
  await nsd?.stop();
  rmSync(dir, { recursive: true, force: true });
});

/** One message from `from` (a loopback source address) through the gateway, as swaks sends it. */
function send(from: string): string {
  const r = spawnSync(
    'swaks',
    [
      '--server',
      server,
      '--local-interface',
      from,
      '--helo',
      'mail.test',
      '--from',
      'a@ok.test',
      '--to',
      'b@dest.test',
      '--timeout',
      '10',
    ],
    { encoding: 'utf8', timeout: 20_000 },
  );
  return `${r.stdout}${r.stderr}`;
}

const spooled = () => readdirSync(spool).filter((f) => f.endsWith('.msg')).length;

describe('mxguard serve: greylisting the clients of an admin regexp table of dynamic pools', () => {
  it('a client whose name is not in the table (and that the classifier calls static) is accepted at once', () => {
    expect(send('127.0.0.2')).toMatch(/<-\s+250 2\.0\.0 Ok: queued as /);
    expect(spooled()).toBe(1);
  });

  it('a client whose PTR matches the table is greylisted 450 4.2.0, then accepted on retry', async () => {
    const first = Date.now();
    expect(send('127.0.0.1')).toMatch(/<\*\*\s+450 4\.2\.0 .*Greylisted, please retry in 1 seconds/);
    expect(spooled()).toBe(1);
    // Retry as an MTA would, after the delay (a retry too early is greylisted again: up to 5 more).
    await new Promise((r) => setTimeout(r, Math.max(0, first + 1_100 - Date.now())));
    let retry = send('127.0.0.1');
    for (let i = 0; i < 5 && !/<-\s+250 2\.0\.0/.test(retry); i += 1) {
      await new Promise((r) => setTimeout(r, 500));
      retry = send('127.0.0.1');
    }
    expect(retry).toMatch(/<-\s+250 2\.0\.0 Ok: queued as /);
    expect(spooled()).toBe(2);
  });

  it('logs the evidence: the table file and line that matched', async () => {
    // The gateway is another process: its log line may still be on its way through the pipe.
    for (let i = 0; i < 100 && !stderr.includes(`admin table ${table} line 3`); i += 1)
      await new Promise((r) => setTimeout(r, 100));
    expect(stderr).toContain(`admin table ${table} line 3`);
  });
});
