/**
 * Greylist decisions per second, memory store and Redis store.
 * Run: npx tsx bench/greylist.ts [decisions]
 * Starts its own redis-server (/usr/bin/redis-server) on a free loopback port and stops it.
 * The mix: 10,000 triplets from 1,000 clients, each decided repeatedly as time moves on, so the
 * outcomes are a realistic blend of new, early, passed and whitelisted-client.
 */
import { cpus } from 'node:os';
import { performance } from 'node:perf_hooks';
import type { GreylistStore } from '../packages/greylist/src/index.js';
import { DEFAULT_POLICY, memoryStore, redisStore } from '../packages/greylist/src/index.js';
import { startRedis } from '../packages/greylist/test/redis-server.js';

const N = Number(process.argv[2] ?? 200_000);
const TRIPLETS = 10_000;
const CLIENTS = 1_000;
const T0 = 1_700_000_000_000;

function request(i: number) {
  const t = i % TRIPLETS;
  const c = t % CLIENTS;
  return {
    triplet: `10.${c >> 8}.${c & 255}.0/24/sender${t}@example.org/rcpt${t % 97}@example.com`,
    client: `10.${c >> 8}.${c & 255}.1`,
    policy: DEFAULT_POLICY,
  };
}

/** `concurrency` decisions in flight at once (one SMTP process serving that many sessions). */
async function run(store: GreylistStore, n: number, concurrency: number) {
  const outcomes: Record<string, number> = {};
  let next = 0;
  const start = performance.now();
  const worker = async () => {
    while (next < n) {
      const i = next++;
      // Time moves 20 ms a decision: a triplet comes back every 200 s (early), then passes at its
      // second return; the run spans an hour or more, so some clients reach the auto-whitelist.
      const d = await store.decide(request(i), T0 + i * 20);
      outcomes[d.outcome] = (outcomes[d.outcome] ?? 0) + 1;
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  const ms = performance.now() - start;
  return { perSecond: Math.round((n / ms) * 1000), ms: Math.round(ms), outcomes };
}

function show(name: string, r: Awaited<ReturnType<typeof run>>, n: number) {
  console.log(
    `${name.padEnd(34)} ${String(r.perSecond).padStart(9)} decisions/s  (${n} in ${r.ms} ms) ${JSON.stringify(r.outcomes)}`,
  );
}

async function main() {
  console.log(`node ${process.version}, ${cpus()[0]?.model ?? 'cpu'} x${cpus().length}`);
  const mem = memoryStore();
  await run(mem, Math.min(N, 20_000), 1); // warm-up
  show('memory, 1 in flight', await run(memoryStore(), N, 1), N);
  show('memory, 64 in flight', await run(memoryStore(), N, 64), N);

  const rn = Math.min(N, 100_000);
  for (const fsync of ['everysec', 'always'] as const) {
    const server = await startRedis({ appendfsync: fsync });
    try {
      for (const conc of [1, 64]) {
        // fsync at every write is disk-bound: fewer decisions, or the bench takes minutes.
        const n =
          fsync === 'always'
            ? conc === 1
              ? Math.min(rn, 5_000)
              : Math.min(rn, 30_000)
            : conc === 1
              ? Math.min(rn, 30_000)
              : rn;
        const s = redisStore({ url: server.url, prefix: `bench${conc}:` });
        await s.ready();
        await run(s, 2_000, conc); // warm-up: script load, connection
        await s.client.flushdb();
        show(`redis AOF ${fsync}, ${conc} in flight`, await run(s, n, conc), n);
        await s.close();
      }
    } finally {
      await server.dispose();
    }
  }
}

await main();
