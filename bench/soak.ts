/**
 * Soak: mixed good and hostile traffic against `mxguard serve` (the gateway) and `mxguard policy`
 * (the Postfix policy server), wired as the CLI wires them (recommended checks, DNS lists, PTR
 * lookups, greylist and reputation in Redis), while DNS faults (the fault-injecting DNS server of
 * the tests: timeouts, wrong IDs, SERVFAIL, a 3 s-slow server) and Redis faults (redis-server
 * killed with SIGKILL, then restarted) are switched on and off. Everything on loopback.
 *
 * Reports answers/s, p50/p99/max answer time (policy answers; SMTP replies), RSS at start and end,
 * and the counts that must be 0: 5xx given to good traffic (a fault must never turn into a
 * permanent refusal), unanswered requests (a good client left without an answer) and lost
 * messages (a 250 whose message is not in the spool).
 *
 * Run: npx tsx bench/soak.ts [--seconds 120]      (default 120 s; longer by flag)
 */
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createRuntime, gatewayOptions, policyServerOptions } from '../packages/cli/src/index.js';
import { silentLogger } from '../packages/core/src/index.js';
import { type Fault, TestDnsServer } from '../packages/dns/test/helpers/dns-server.js';
import { startRedis } from '../packages/greylist/test/redis-server.js';
import { startPolicyServer } from '../packages/postfix/src/index.js';
import { PolicyClient, rcptRequest } from '../packages/postfix/test/helpers.js';
import { SPOOL_SUFFIX, startGateway } from '../packages/smtp/src/index.js';
import { RawClient } from '../packages/smtp/test/helpers.js';
import { percentile } from '../testing/mail-load.js';

const arg = process.argv.indexOf('--seconds');
const seconds = arg > 0 ? Number(process.argv[arg + 1]) : 120;
if (!Number.isFinite(seconds) || seconds <= 0) throw new Error('--seconds must be a positive number');
/** No answer within this is counted unanswered (Postfix's policy timeout is 10 s). */
const UNANSWERED_MS = 30_000;

const rssStart = process.memoryUsage().rss;
const dns = new TestDnsServer();
// Good senders: FCrDNS for loopback (the gateway's clients) and for the policy clients, sender
// domains with MX and A. Bad ones: a HELO of localhost, sender domains that do not exist.
dns.add('1.0.0.127.in-addr.arpa', { type: 'PTR', data: 'mail.good.test' });
dns.add('mail.good.test', { type: 'A', data: '127.0.0.1' });
for (let i = 1; i <= 20; i++) {
  dns.add(`${i}.2.0.192.in-addr.arpa`, { type: 'PTR', data: `mx${i}.good.test` });
  dns.add(`mx${i}.good.test`, { type: 'A', data: `192.0.2.${i}` });
}
// The sender domain's MX must be a public address (a private one is refused as Postfix's
// reject_unknown_sender_domain would); nothing is ever sent there.
dns.add('good.test', { type: 'MX', data: { preference: 10, exchange: 'mx.good.test' } });
dns.add('mx.good.test', { type: 'A', data: '93.184.216.34' });
await dns.start();
const redis = await startRedis({ appendfsync: 'everysec' });
const spoolDir = await mkdtemp(join(tmpdir(), 'mxguard-soak-spool-'));
const rt = await createRuntime(
  {
    ourDomains: ['example.com'],
    ourHosts: ['mx.example.com'],
    dnsLists: ['zen.test=127.0.0.[2..11]*3'],
    greylist: { store: redis.url, prefix: 'soak:', commandTimeout: 500 },
    reputationStore: { url: redis.url, prefix: 'soak:rep:' },
  },
  { resolver: dns.address, log: silentLogger },
);
const gw = await startGateway({
  ...gatewayOptions(rt, { spoolDir, host: '127.0.0.1', port: 0 }),
  // Every client here is 127.0.0.1: the per-client limits would measure themselves.
  connectionLimits: { perClient: 0, ratePerMinute: 0, total: 200 },
  maxClients: 200,
});
const policy = await startPolicyServer(policyServerOptions(rt, { listen: { host: '127.0.0.1', port: 0 } }));

// --- fault schedule: 10 s phases, in turn -------------------------------------------------------
type Phase = { name: string; dns?: Fault; delay?: number; redis?: 'down' };
const phases: Phase[] = [
  { name: 'clean' },
  { name: 'dns drop', dns: 'drop' },
  { name: 'clean' },
  { name: 'redis killed', redis: 'down' },
  { name: 'dns wrongid', dns: 'wrongid' },
  { name: 'dns slow 3s', delay: 3000 },
  { name: 'dns servfail + redis killed', dns: 'servfail', redis: 'down' },
  { name: 'clean' },
];
let redisUp = true;
async function apply(p: Phase): Promise<void> {
  dns.fault = p.dns;
  dns.delay = p.delay ?? 0;
  if (p.redis === 'down' && redisUp) {
    await redis.kill();
    redisUp = false;
  } else if (p.redis !== 'down' && !redisUp) {
    await redis.start();
    redisUp = true;
  }
}

// --- measurements ---------------------------------------------------------------------------------
const policyTimes: number[] = [];
const smtpTimes: number[] = [];
const counts = {
  policyAnswers: 0,
  smtpReplies: 0,
  good5xx: 0,
  unanswered: 0,
  accepted: 0,
  deferred: 0,
  hostileRefused: 0,
  hostileConnections: 0,
};
const good5xxSamples: string[] = [];
const deferSamples = new Set<string>();
let running = true;

/** Times one answer; a good request with no answer within UNANSWERED_MS is counted unanswered. */
async function timed<T>(times: number[], work: () => Promise<T>): Promise<T | undefined> {
  const t0 = performance.now();
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<undefined>((r) => {
    timer = setTimeout(() => r(undefined), UNANSWERED_MS);
  });
  try {
    const v = await Promise.race([work(), late]);
    if (v === undefined) counts.unanswered++;
    else times.push(performance.now() - t0);
    return v;
  } catch {
    counts.unanswered++;
    return undefined;
  } finally {
    clearTimeout(timer);
  }
}

function good5xx(where: string, reply: string, phase: string): void {
  counts.good5xx++;
  if (good5xxSamples.length < 5) good5xxSamples.push(`${phase}: ${where}: ${reply}`);
}

let phaseName = 'clean';

/** A Postfix smtpd with its persistent policy connection: good and bad requests, one at a time. */
async function postfixLike(id: number): Promise<void> {
  let c = await PolicyClient.open(policy);
  for (let n = 0; running; n++) {
    const good = n % 3 !== 2;
    const i = (id % 20) + 1;
    const req = good
      ? rcptRequest({
          client_address: `192.0.2.${i}`,
          client_name: `mx${i}.good.test`,
          reverse_client_name: `mx${i}.good.test`,
          helo_name: `mx${i}.good.test`,
          sender: `s${n}@good.test`,
          recipient: 'bob@example.com',
          instance: `p${id}.${n}`,
        })
      : rcptRequest({
          client_address: `198.51.100.${(n % 250) + 1}`,
          client_name: 'unknown',
          reverse_client_name: 'unknown',
          helo_name: 'localhost',
          sender: `spam${n}@no-such-domain-${n}.test`,
          recipient: `guess${n}@example.com`,
          instance: `h${id}.${n}`,
        });
    const phase = phaseName;
    const action = await timed(policyTimes, () => c.ask(req));
    if (action === undefined) {
      c.socket.destroy();
      c = await PolicyClient.open(policy);
      continue;
    }
    counts.policyAnswers++;
    if (good && /^5\d\d /.test(action)) good5xx('policy', action, phase);
  }
  c.close();
}

/** A good SMTP client: one message per connection, every reply timed. */
async function goodSender(id: number): Promise<void> {
  for (let n = 0; running; n++) {
    const phase = phaseName;
    let c: RawClient | undefined;
    try {
      c = await RawClient.open(gw.port);
      const client = c;
      const step = async (line: string | undefined): Promise<string | undefined> => {
        const r = await timed(smtpTimes, () => (line === undefined ? client.line() : client.cmd(line)));
        if (r !== undefined) counts.smtpReplies++;
        return r;
      };
      const lines = [
        undefined,
        'EHLO mail.good.test',
        `MAIL FROM:<g${id}.${n}@good.test>`,
        'RCPT TO:<user@example.com>',
        'DATA',
        `Subject: soak ${id}.${n}\r\n\r\nhello\r\n.`,
      ];
      for (const line of lines) {
        const r = await step(line);
        if (r === undefined) break;
        if (/^5\d\d /.test(r)) {
          good5xx(`smtp ${line ?? 'greeting'}`, r, phase);
          break;
        }
        if (/^4\d\d /.test(r)) {
          counts.deferred++;
          if (deferSamples.size < 5) deferSamples.add(`${line ?? 'greeting'}: ${r}`);
          break;
        }
        if (line?.startsWith('Subject:') && r.startsWith('250 ')) counts.accepted++;
      }
      c.write('QUIT\r\n');
    } catch {
      // A refused connection is not an answer we waited for in vain; try again.
    } finally {
      c?.close();
    }
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Hostile SMTP: RCPT floods, junk, a bad HELO, drips; whatever it gets is fine but a crash. */
async function hostile(id: number): Promise<void> {
  for (let n = 0; running; n++) {
    let c: RawClient | undefined;
    try {
      c = await RawClient.open(gw.port);
      counts.hostileConnections++;
      await c.line();
      const kind = (id + n) % 4;
      if (kind === 0) {
        await c.cmd('EHLO flood.test');
        await c.cmd('MAIL FROM:<x@good.test>');
        c.write(Array.from({ length: 1500 }, (_, i) => `RCPT TO:<f${i}@example.com>\r\n`).join(''));
        for (let i = 0; i < 1500; i++) if (/^[45]/.test(await c.line())) counts.hostileRefused++;
      } else if (kind === 1) {
        await c.cmd('EHLO junk.test');
        for (let i = 0; i < 110 && !c.closed; i++) await c.cmd('NOOP');
      } else if (kind === 2) {
        await c.cmd('EHLO localhost');
        await c.cmd(`MAIL FROM:<spam${n}@no-such-domain-${n}.test>`);
        if (/^[45]/.test(await c.cmd('RCPT TO:<user@example.com>'))) counts.hostileRefused++;
      } else {
        // A drip: one NOOP a second for 5 s, then gone.
        await c.cmd('EHLO drip.test');
        for (let i = 0; i < 5 && running && !c.closed; i++) {
          await new Promise((r) => setTimeout(r, 1000));
          c.write('NOOP\r\n');
        }
      }
    } catch {
      // Closed on us: that is what limits are for.
    } finally {
      c?.close();
    }
  }
}

// 50 idle policy connections that never ask (they must not cost the Postfix-like ones anything).
const idle = await Promise.all(Array.from({ length: 50 }, () => PolicyClient.open(policy)));

const started = performance.now();
const workers = [
  ...Array.from({ length: 20 }, (_, i) => postfixLike(i)),
  ...Array.from({ length: 8 }, (_, i) => goodSender(i)),
  ...Array.from({ length: 4 }, (_, i) => hostile(i)),
];
const phaseMs = 10_000;
const schedule = (async () => {
  for (let i = 0; running; i++) {
    const p = phases[i % phases.length] as Phase;
    phaseName = p.name;
    await apply(p);
    const end = Math.min(performance.now() + phaseMs, started + seconds * 1000);
    while (performance.now() < end) await new Promise((r) => setTimeout(r, 100));
    if (performance.now() >= started + seconds * 1000) running = false;
  }
  await apply({ name: 'clean' });
})();
await schedule;
await Promise.all(workers);
const elapsed = (performance.now() - started) / 1000;
for (const c of idle) c.close();

const spooled = (await readdir(spoolDir)).filter((f) => f.endsWith(SPOOL_SUFFIX)).length;
await gw.close();
await policy.close();
await rt.close();
await dns.stop();
await redis.dispose();
await rm(spoolDir, { recursive: true, force: true });
const rssEnd = process.memoryUsage().rss;

const ms = (a: number[], p: number) => (a.length ? percentile(a, p) : '-');
const sorted = (a: number[]) => [...a].sort((x, y) => x - y);
const pt = sorted(policyTimes);
const st = sorted(smtpTimes);
const lost = Math.max(0, counts.accepted - spooled);
console.log(
  `soak: ${elapsed.toFixed(0)} s, phases of ${phaseMs / 1000} s: ${phases.map((p) => p.name).join(' / ')}`,
);
console.log(
  `policy: ${counts.policyAnswers} answers, ${(counts.policyAnswers / elapsed).toFixed(0)}/s, p50 ${ms(pt, 50)} ms, p99 ${ms(pt, 99)} ms, max ${pt.at(-1)?.toFixed(0) ?? '-'} ms`,
);
console.log(
  `smtp: ${counts.smtpReplies} replies, ${(counts.smtpReplies / elapsed).toFixed(0)}/s, p50 ${ms(st, 50)} ms, p99 ${ms(st, 99)} ms, max ${st.at(-1)?.toFixed(0) ?? '-'} ms; good messages accepted ${counts.accepted}, deferred ${counts.deferred}; hostile connections ${counts.hostileConnections}, refusals ${counts.hostileRefused}`,
);
console.log(
  `RSS: start ${(rssStart / 2 ** 20).toFixed(0)} MB, end ${(rssEnd / 2 ** 20).toFixed(0)} MB (servers and clients in one process)`,
);
console.log(
  `5xx to good traffic: ${counts.good5xx}; unanswered: ${counts.unanswered}; lost messages: ${lost} (accepted ${counts.accepted}, spooled ${spooled})`,
);
for (const s of good5xxSamples) console.log(`  5xx: ${s}`);
for (const s of deferSamples) console.log(`  a deferral: ${s}`);
process.exit(counts.good5xx === 0 && counts.unanswered === 0 && lost === 0 ? 0 : 1);
