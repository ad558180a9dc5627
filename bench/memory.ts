/**
 * Memory per entry of the in-memory stores: bytes of V8 heap (plus array buffers) per greylist
 * triplet and per reputation record, at 100,000 and 1,000,000 entries. Each measurement runs in a
 * child process of its own with `--expose-gc`: the heap is collected before and after filling the
 * store with N distinct, realistic entries, and the difference is divided by N. The figures set the
 * bounds: `maxTriplets`/`maxClients` of the greylist memory store and `max` of the reputation one
 * are counts, so bytes = count x bytes an entry.
 *
 * Run: npx tsx bench/memory.ts [counts=100000,1000000]
 */
import { spawnSync } from 'node:child_process';
import { cpus } from 'node:os';
import { fileURLToPath } from 'node:url';
import { memoryStore, networkTripletKey } from '../packages/greylist/src/index.js';
import { DEFAULT_POLICY } from '../packages/greylist/src/machine.js';
import { MemoryReputationStore } from '../packages/reputation/src/index.js';

const gc = (globalThis as { gc?: () => void }).gc;

function heap(): number {
  gc?.();
  gc?.();
  const m = process.memoryUsage();
  return m.heapUsed + m.arrayBuffers;
}

/** The i-th client network, sender and recipient: distinct, the shapes real traffic has. */
function triplet(i: number): { net: string; sender: string; rcpt: string; client: string } {
  const a = 16 + ((i >>> 16) & 127);
  const b = (i >>> 8) & 255;
  const c = i & 255;
  return {
    net: `${a}.${b}.${c}.0/24`,
    client: `${a}.${b}.${c}.${1 + (i % 250)}`,
    sender: `newsletter-${i % 5000}@sender${i % 20000}.example.net`,
    rcpt: `user${i % 3000}@example.com`,
  };
}

async function greylist(n: number): Promise<{ bytes: number; size: number }> {
  const store = memoryStore({ maxTriplets: n, maxClients: n });
  const before = heap();
  let now = 1_700_000_000_000;
  for (let i = 0; i < n; i++) {
    const t = triplet(i);
    await store.decide(
      { triplet: networkTripletKey(t.net, t.sender, t.rcpt), client: t.client, policy: DEFAULT_POLICY },
      now++,
    );
  }
  const after = heap();
  const size = store.size.triplets;
  await store.close();
  return { bytes: after - before, size };
}

async function reputation(n: number): Promise<{ bytes: number; size: number }> {
  const store = new MemoryReputationStore({ max: n });
  const before = heap();
  const bounds = { min: -100, max: 100, ttlMs: 30 * 86_400_000 };
  let now = 1_700_000_000_000;
  for (let i = 0; i < n; i++) {
    // The reputation check keys a client by its network (and an address that offended by itself).
    await store.addScore(`net:${triplet(i).net}`, 5, now++, 86_400_000, bounds);
  }
  const after = heap();
  let size = 0;
  for (let i = 0; i < n; i += Math.max(1, Math.floor(n / 1000))) {
    if ((await store.score(`net:${triplet(i).net}`, now, 86_400_000)) > 0) size++;
  }
  await store.close();
  return {
    bytes: after - before,
    size: Math.round((size / Math.ceil(n / Math.max(1, Math.floor(n / 1000)))) * n),
  };
}

const child = process.argv.indexOf('--child');
if (child >= 0) {
  if (!gc) throw new Error('run with --expose-gc');
  const what = process.argv[child + 1];
  const n = Number(process.argv[child + 2]);
  const r = what === 'greylist' ? await greylist(n) : await reputation(n);
  process.stdout.write(`${JSON.stringify(r)}\n`);
} else {
  const counts = (process.argv[2] ?? '100000,1000000').split(',').map(Number);
  const script = fileURLToPath(import.meta.url);
  console.log(`machine: ${cpus().length} x ${cpus()[0]?.model ?? '?'}, Node ${process.version}`);
  console.log('| store | entries | held | heap MB | bytes an entry |');
  console.log('| --- | ---: | ---: | ---: | ---: |');
  for (const what of ['greylist', 'reputation']) {
    for (const n of counts) {
      const out = spawnSync(
        process.execPath,
        ['--expose-gc', '--max-old-space-size=4096', ...process.execArgv, script, '--child', what, String(n)],
        { encoding: 'utf8' },
      );
      if (out.status !== 0) throw new Error(`${what} ${n}: ${out.stderr}`);
      const r = JSON.parse(out.stdout) as { bytes: number; size: number };
      const label =
        what === 'greylist' ? 'greylist memory store, triplets' : 'reputation memory store, scores';
      console.log(
        `| ${label} | ${n.toLocaleString('en')} | ${r.size.toLocaleString('en')} | ${(r.bytes / 1e6).toFixed(0)} | ${Math.round(r.bytes / n)} |`,
      );
    }
  }
}
