/**
 * Drives one in-memory store to its byte bound and reports memory, in a process of its own so
 * nothing else of the test run is counted. Run with `node --expose-gc --import tsx`.
 *
 * argv: kind bound keyLength
 * - kind: `greylist-triplets`, `greylist-clients`, `reputation-scores`, `reputation-windows`,
 *   `callout`, `anvil`
 * - bound: the store's byte bound (maxTripletBytes, maxClientBytes, maxBytes); for `anvil`, whose
 *   keys are at most an IPv6 /64, the entry count (maxTracked)
 * - keyLength: characters of each key (the part the client controls: sender, recipient, address)
 *
 * Inserts ten times the bound's worth of distinct entries, each counted as the store counts it,
 * with the stores' default entry counts (so only the byte bound can stop them), and prints one JSON
 * line: heap before and after (heapUsed + arrayBuffers, after a full GC), entries inserted, entries
 * and counted bytes held, whether the newest entry is held and the oldest gone.
 */
import { CALLOUT_OVERHEAD_BYTES, MemoryCalloutStore } from '../packages/callout/src/index.js';
import { ManualClock } from '../packages/core/src/index.js';
import {
  CLIENT_OVERHEAD_BYTES,
  memoryStore,
  TRIPLET_OVERHEAD_BYTES,
} from '../packages/greylist/src/index.js';
import { DEFAULT_POLICY } from '../packages/greylist/src/machine.js';
import { MemoryReputationStore, REPUTATION_OVERHEAD_BYTES } from '../packages/reputation/src/index.js';
import { ConnectionLimits } from '../packages/smtp/src/anvil.js';

const [kind, boundArg, keyArg] = process.argv.slice(2);
const bound = Number(boundArg);
const keyLength = Number(keyArg);
const gc = (globalThis as { gc?: () => void }).gc;
if (!gc || !kind || !(bound > 0) || !(keyLength > 0)) throw new Error('usage: see the header');

function heap(): number {
  gc?.();
  gc?.();
  const m = process.memoryUsage();
  return m.heapUsed + m.arrayBuffers;
}

/**
 * The i-th key: distinct, exactly `length` characters, ASCII as mail addresses are, and one flat
 * string as read from a socket (not a rope of shared pieces, which would understate its size).
 */
function key(i: number, length: number): string {
  const b = Buffer.alloc(length, 'x');
  b.write(`k${i}@`);
  return b.toString('latin1');
}

interface Store {
  /** Bytes one entry is counted as. */
  readonly per: number;
  put(i: number): Promise<void>;
  has(i: number): Promise<boolean>;
  held(): { entries: number; bytes: number };
}

const now = 1_700_000_000_000;
const policy = DEFAULT_POLICY;

async function make(): Promise<Store> {
  switch (kind) {
    case 'greylist-triplets': {
      const s = memoryStore({ maxTripletBytes: bound, clock: new ManualClock(now) });
      const k = (i: number) => `10.0.0.0/24/${key(i, keyLength)}`;
      return {
        per: TRIPLET_OVERHEAD_BYTES + 2 * k(0).length,
        put: async (i) => void (await s.decide({ triplet: k(i), client: '10.0.0.1', policy }, now)),
        has: async (i) => (await s.inspect(k(i), '10.0.0.1')).triplet !== undefined,
        held: () => ({ entries: s.size.triplets, bytes: s.size.tripletBytes }),
      };
    }
    case 'greylist-clients': {
      // A client record is made when a triplet first passes: with no delay, every new triplet
      // passes at once. The triplets are held to 64 KiB, inside the margin.
      const s = memoryStore({ maxClientBytes: bound, maxTripletBytes: 65_536, clock: new ManualClock(now) });
      const open = { ...policy, delay: 0 };
      const k = (i: number) => key(i, keyLength);
      return {
        per: CLIENT_OVERHEAD_BYTES + 2 * k(0).length,
        put: async (i) => void (await s.decide({ triplet: `t${i}`, client: k(i), policy: open }, now)),
        has: async (i) => (await s.inspect('-', k(i))).client !== undefined,
        held: () => ({ entries: s.size.clients, bytes: s.size.clientBytes }),
      };
    }
    case 'reputation-scores':
    case 'reputation-windows': {
      const s = new MemoryReputationStore({ maxBytes: bound });
      const k = (i: number) => key(i, keyLength);
      const bounds = { min: -100, max: 100, ttlMs: 86_400_000 };
      const windows = kind === 'reputation-windows';
      const cap = 20;
      return {
        per: REPUTATION_OVERHEAD_BYTES + 2 * (k(0).length + 2) + (windows ? 16 * cap : 0),
        put: async (i) => {
          if (!windows) await s.addScore(k(i), 5, now, 86_400_000, bounds);
          else for (let n = 0; n < cap; n++) await s.hit(k(i), now + n, 3_600_000, cap);
        },
        has: async (i) =>
          windows
            ? (await s.hit(k(i), now + cap, 3_600_000, cap)) === cap
            : (await s.score(k(i), now, 86_400_000)) > 0,
        held: () => s.size,
      };
    }
    case 'callout': {
      const s = new MemoryCalloutStore({ maxBytes: bound });
      const k = (i: number) => key(i, keyLength);
      const text = `550 5.1.1 ${'y'.repeat(500)}`;
      const record = {
        status: 'unknown-user' as const,
        probed: 0,
        updated: now,
        text,
        expires: now + 3_600_000,
      };
      return {
        per: CALLOUT_OVERHEAD_BYTES + 2 * (k(0).length + text.length),
        put: (i) => s.set(k(i), { ...record }, now),
        has: async (i) => (await s.get(k(i), now)) !== undefined,
        held: () => s.size,
      };
    }
    case 'anvil': {
      // Keys are the client's IPv4 address or IPv6 /64, never longer: the count bounds the bytes.
      // One new connection a minute: a second one from a client still tracked is refused.
      const limits = new ConnectionLimits({ maxTracked: bound, ratePerMinute: 1 }, new ManualClock(now));
      const address = (i: number) =>
        `2001:db8:${((i >>> 16) & 0xffff).toString(16)}:${(i & 0xffff).toString(16)}:ffff:ffff:ffff:ffff`;
      return {
        per: 1, // counted in entries
        put: async (i) => {
          if (limits.admit(`c${i}`, address(i)) === undefined) limits.close(`c${i}`);
        },
        has: async (i) => limits.admit('probe', address(i)) === 'rate',
        held: () => ({ entries: limits.tracked, bytes: limits.tracked }),
      };
    }
    default:
      throw new Error(`unknown kind ${kind}`);
  }
}

const store = await make();
await store.put(-1); // code and buffers in place before the first measurement
const before = heap();
const inserted = Math.ceil((10 * bound) / store.per);
for (let i = 0; i < inserted; i++) await store.put(i);
const after = heap();
const newest = await store.has(inserted - 1);
const oldest = await store.has(0);
process.stdout.write(
  `${JSON.stringify({ before, after, inserted, per: store.per, held: store.held(), newest, oldest })}\n`,
);
