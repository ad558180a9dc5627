/**
 * DNS benchmark. (a) Queries sent per session for a realistic mix (many sessions, few distinct
 * client IPs) against a counting DNS server, next to the number of distinct lookups (the floor).
 * (b) Latency of the full chain of DNS checks against a server answering after 20 ms, next to the
 * depth of its dependent lookups times 20 ms. Run: `npx tsx bench/dns.ts`.
 */
import { bindFactories, chain, ManualClock, recommended, type Session } from '../packages/core/src/index.js';
import {
  DnsResolver,
  dnsbl,
  dnsFactories,
  dnswl,
  fcrdns,
  heloResolves,
  parseListSpec,
  prefetch,
  recipientDomain,
  rhsbl,
  senderDomain,
} from '../packages/dns/src/index.js';
import { TestDnsServer } from '../packages/dns/test/helpers/dns-server.js';
import { greylistFactories, memoryStore } from '../packages/greylist/src/index.js';

const LISTS = ['zen.test=127.0.0.[2..11]*3', 'bl2.test*1', 'wl.test=127.0.[0..255].[1..3]*-2'].map(
  parseListSpec,
);
const RHS = [parseListSpec('dbl.test=127.0.1.[2..99]')];

function checksOn(r: DnsResolver) {
  return [
    dnswl(
      r,
      LISTS.filter((l) => l.weight < 0),
    ),
    dnsbl(r, LISTS, { threshold: 3 }),
    rhsbl(r, RHS),
    fcrdns(r),
    heloResolves(r),
    senderDomain(r),
    recipientDomain(r),
  ];
}

async function main(): Promise<void> {
  const server = new TestDnsServer();
  const ips = Array.from({ length: 20 }, (_, i) => `192.0.2.${10 + i}`);
  for (const [i, ip] of ips.entries()) {
    const rev = ip.split('.').reverse().join('.');
    server.add(`${rev}.in-addr.arpa`, { type: 'PTR', data: `mta${i}.senders.test` });
    server.add(`mta${i}.senders.test`, { type: 'A', data: ip });
    if (i % 5 === 0) {
      server.add(`${rev}.zen.test`, { type: 'A', data: '127.0.0.4' });
      server.add(`${rev}.zen.test`, { type: 'TXT', data: ['listed'] });
    }
  }
  for (let d = 0; d < 30; d++) {
    server.add(`domain${d}.test`, { type: 'MX', data: { preference: 10, exchange: `mx.domain${d}.test` } });
    server.add(`mx.domain${d}.test`, { type: 'A', data: `198.51.100.${d + 1}` });
  }
  server.add('ours.test', { type: 'MX', data: { preference: 10, exchange: 'mx.ours.test' } });
  server.add('mx.ours.test', { type: 'A', data: '203.0.113.25' });
  await server.start();

  // (a) 2000 sessions, 20 client IPs (skewed: a few IPs send most), 30 sender domains.
  const r = new DnsResolver({ servers: [server.address], timeout: 1000, clock: new ManualClock(1) });
  const checks = checksOn(r);
  const ctx = {
    clock: new ManualClock(1),
    log: { debug() {}, info() {}, warn() {}, error() {} },
    findings: [],
  };
  let seed = 7;
  const rand = () => {
    seed = (seed * 1103515245 + 12345) & 0x7fffffff;
    return seed / 0x7fffffff;
  };
  const N = 2000;
  const batch = 100;
  for (let start = 0; start < N; start += batch) {
    await Promise.all(
      Array.from({ length: batch }, async () => {
        const i = Math.floor(ips.length * rand() ** 2);
        const session: Session = {
          clientAddress: ips[i] ?? '192.0.2.10',
          helo: `mta${i}.senders.test`,
          mailFrom: `user@domain${Math.floor(30 * rand())}.test`,
          rcptTo: 'someone@ours.test',
          stage: 'rcpt',
        };
        prefetch(r, session, { dnsLists: LISTS, rhsLists: RHS });
        for (const c of checks) await c.run(session, ctx);
      }),
    );
  }
  const sent = server.total();
  const distinct = server.counts.size;
  const st = r.stats();
  console.log('(a) query economy');
  console.log(
    `  sessions                      ${N} (${ips.length} client IPs, 30 sender domains, 7 DNS checks, 4 lists)`,
  );
  console.log(`  queries sent                  ${sent}  (${(sent / N).toFixed(3)} per session)`);
  console.log(`  distinct lookups (the floor)  ${distinct}  (${(distinct / N).toFixed(3)} per session)`);
  console.log(`  resolver: cache hits ${st.cacheHits}, coalesced ${st.coalesced}, failures ${st.failures}`);

  // (b) latency of one session's full chain, cold cache, server answering after 20 ms.
  server.delay = 20;
  // A client that is not listed, so every check of the chain runs (a listed one stops at dnsbl).
  const session: Session = {
    clientAddress: '192.0.2.11',
    helo: 'mta1.senders.test',
    mailFrom: 'user@domain1.test',
    rcptTo: 'someone@ours.test',
    stage: 'rcpt',
  };
  const runs = 5;
  const measure = async (withPrefetch: boolean) => {
    const times: number[] = [];
    for (let k = 0; k < runs; k++) {
      const cold = new DnsResolver({ servers: [server.address], timeout: 2000, clock: new ManualClock(1) });
      const c = chain(checksOn(cold), { clock: new ManualClock(1) });
      const t0 = performance.now();
      if (withPrefetch) {
        const p = prefetch(cold, session, { dnsLists: LISTS, rhsLists: RHS });
        await c.evaluate({ ...session, rdns: await p.rdns });
      } else await c.evaluate(session);
      times.push(performance.now() - t0);
    }
    times.sort((x, y) => x - y);
    return times[Math.floor(runs / 2)] ?? 0;
  };
  const pre = await measure(true);
  const seq = await measure(false);
  // Dependent lookups: PTR -> A of the PTR name (2). The right-hand-side lookup of the verified
  // PTR name would be a third, but here that name is also the HELO name, whose rhsbl lookup
  // prefetch starts at connect; DNS list A (1; 2 with the TXT of a listing); sender MX -> MX host
  // A (2); HELO A/AAAA (1). So the floor of this session is 2 x 20 ms.
  const depth = 2;
  console.log('(b) latency of the DNS chain, server answering after 20 ms');
  console.log(`  depth of dependent lookups    ${depth} x 20 ms = ${depth * 20} ms`);
  console.log(`  with prefetch (median of ${runs})    ${pre.toFixed(1)} ms`);
  console.log(`  checks awaited one by one     ${seq.toFixed(1)} ms`);

  // (c) the whole recommended preset (every pure check, the seven DNS checks, the rDNS checks and
  // the selective greylist on a memory store), PTR and lists prefetched at connect.
  const full = async () => {
    const times: number[] = [];
    for (let k = 0; k < runs; k++) {
      const clock = new ManualClock(1);
      const cold = new DnsResolver({ servers: [server.address], timeout: 2000, clock });
      const registry = {
        ...bindFactories(dnsFactories, { resolver: cold, dnsLists: LISTS, rhsLists: RHS }),
        ...bindFactories(greylistFactories, { store: memoryStore({ clock }) }),
      };
      const { chain: c } = recommended({
        ourDomains: ['ours.test'],
        provided: registry,
        omit: ['reputation', 'address-guessing', 'callout'],
        clock,
      });
      const t0 = performance.now();
      const p = prefetch(cold, session, { dnsLists: LISTS, rhsLists: RHS });
      const d = await c.evaluate({ ...session, rdns: await p.rdns });
      times.push(performance.now() - t0);
      if (k === 0) console.log(`  (verdict ${d.action}, ${d.trace.length} links evaluated)`);
    }
    times.sort((x, y) => x - y);
    return times[Math.floor(runs / 2)] ?? 0;
  };
  console.log('(c) latency of the full recommended preset, server answering after 20 ms');
  const fullMs = await full();
  console.log(`  depth of dependent lookups    ${depth} x 20 ms = ${depth * 20} ms`);
  console.log(`  with prefetch (median of ${runs})    ${fullMs.toFixed(1)} ms`);
  await server.stop();
}

await main();
