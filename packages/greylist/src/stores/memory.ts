import { randomBytes } from 'node:crypto';
import { open, readFile, rename, unlink } from 'node:fs/promises';
import type { Clock, Logger } from '@mxguard/core';
import { requirePositiveIntegers, silentLogger } from '@mxguard/core';
import { LRUCache } from 'lru-cache';
import type { ClientRecord, GreylistDecision, TripletRecord } from '../machine.js';
import { DEFAULT_POLICY, greylistStep } from '../machine.js';
import type { DecideRequest, GreylistStore } from './types.js';

/** Options of the in-memory store. */
export interface MemoryStoreOptions {
  /** Most triplets kept; the least recently seen go first. @default 100_000 */
  readonly maxTriplets?: number;
  /** Most auto-whitelist client records kept. @default 50_000 */
  readonly maxClients?: number;
  /**
   * Bytes the triplets may hold, as {@link tripletBytes} counts them (a key can be long: a sender
   * and a recipient of up to 512 bytes each); past it the least recently seen go first.
   * @default 67108864 (64 MiB: the 100,000 default triplets of typical length fit)
   */
  readonly maxTripletBytes?: number;
  /** Bytes the client records may hold, as {@link clientBytes} counts them. @default 16777216 (16 MiB) */
  readonly maxClientBytes?: number;
  /**
   * The clock lru-cache measures entry age with (its `perf` option). Default: the latest `now`
   * passed to `decide`, so the store never reads the system clock and tests never sleep.
   */
  readonly clock?: Clock;
  /** How long records loaded from a file live before they are seen again (ms). @default 35 days */
  readonly maxAge?: number;
  /**
   * A JSON file to keep the records in across restarts: read by `load()`, written atomically
   * (temporary file + rename) by `save()`, by `close()`, and every `saveInterval`.
   */
  readonly file?: string;
  /** Save to `file` this often (ms); 0: only on `save()`/`close()`. @default 0 */
  readonly saveInterval?: number;
  /** Where save failures are reported. @default silent */
  readonly log?: Logger;
  /**
   * Randomness for the temporary file's name (`<file>.<hex>.tmp`), so two saves never write one
   * temporary file. Passed in, as every source of randomness in mxguard.
   * @default crypto.randomBytes
   */
  readonly random?: (bytes: number) => Uint8Array;
}

/** The memory store's extras: persistence by hand. */
export interface MemoryStore extends GreylistStore {
  readonly kind: 'memory';
  /** The decision at once: the records are in this process. */
  decideNow(request: DecideRequest, now: number): GreylistDecision;
  /** Writes every live record to `file` (or the given path), atomically. Returns the number written. */
  save(path?: string): Promise<number>;
  /** Reads records from `file` (or the given path); a missing file is an empty store. Returns the number read. */
  load(path?: string): Promise<number>;
  /** How many triplets and clients are held, and their bytes as counted against the bounds. */
  readonly size: {
    /** Triplets held. */
    readonly triplets: number;
    /** Auto-whitelist client records held. */
    readonly clients: number;
    /** The triplets' bytes, against `maxTripletBytes`. */
    readonly tripletBytes: number;
    /** The client records' bytes, against `maxClientBytes`. */
    readonly clientBytes: number;
  };
}

/**
 * Bytes a triplet is counted as: 512 for the record and lru-cache's slot (measured 548 in all with a
 * 60-character key, bench/memory.ts) + 2 a key character (V8 keeps ASCII keys in one byte a
 * character, two for others). O(1): a string length, nothing serialised.
 */
export function tripletBytes(key: string): number {
  return TRIPLET_OVERHEAD_BYTES + 2 * key.length;
}
/** Bytes a triplet is counted as besides its key (see {@link tripletBytes}). */
export const TRIPLET_OVERHEAD_BYTES = 512;

/** Bytes an auto-whitelist client record is counted as: 256 + 2 a key character. */
export function clientBytes(key: string): number {
  return CLIENT_OVERHEAD_BYTES + 2 * key.length;
}
/** Bytes a client record is counted as besides its key (see {@link clientBytes}). */
export const CLIENT_OVERHEAD_BYTES = 256;

interface FileFormat {
  readonly format: 'mxguard-greylist';
  readonly version: 1;
  /** key -> [first, last, count] */
  readonly triplets: Record<string, [number, number, number]>;
  /** key -> [count, last] */
  readonly clients: Record<string, [number, number]>;
}

/**
 * The embedded default store: the state machine over two bounded LRU maps (lru-cache), one for
 * triplets and one for auto-whitelist clients. Every decision is synchronous inside one `decide`
 * call, so it is atomic within the process. Entries expire `maxAge` after they were last seen
 * (lru-cache `ttl`, checked on access: no timers, `ttlAutopurge` off).
 */
export function memoryStore(options: MemoryStoreOptions = {}): MemoryStore {
  const maxTriplets = options.maxTriplets ?? 100_000;
  const maxClients = options.maxClients ?? 50_000;
  const maxTripletBytes = options.maxTripletBytes ?? 64 * 1024 * 1024;
  const maxClientBytes = options.maxClientBytes ?? 16 * 1024 * 1024;
  requirePositiveIntegers({ maxTriplets, maxClients, maxTripletBytes, maxClientBytes }, 'memoryStore: ');
  const loadedMaxAge = options.maxAge ?? DEFAULT_POLICY.maxAge;
  const log = options.log ?? silentLogger;
  const random = options.random ?? randomBytes;
  let latest = 0;
  const perf = options.clock ?? { now: () => latest };
  const lruOptions = { perf, ttlResolution: 0, ttlAutopurge: false, updateAgeOnGet: false } as const;
  // An entry larger than the whole bound is not kept (lru-cache refuses it): never at the defaults.
  const triplets = new LRUCache<string, TripletRecord>({
    max: maxTriplets,
    maxSize: maxTripletBytes,
    sizeCalculation: (_v, key) => tripletBytes(key),
    ...lruOptions,
  });
  const clients = new LRUCache<string, ClientRecord>({
    max: maxClients,
    maxSize: maxClientBytes,
    sizeCalculation: (_v, key) => clientBytes(key),
    ...lruOptions,
  });
  const ttlFor = (last: number, maxAge: number) => Math.max(1, last + maxAge - perf.now());

  let saving: Promise<number> = Promise.resolve(0);
  let timer: NodeJS.Timeout | undefined;

  const store: MemoryStore = {
    kind: 'memory',
    get size() {
      return {
        triplets: triplets.size,
        clients: clients.size,
        tripletBytes: triplets.calculatedSize,
        clientBytes: clients.calculatedSize,
      };
    },
    async decide(req: DecideRequest, now: number): Promise<GreylistDecision> {
      return store.decideNow(req, now);
    },
    decideNow(req: DecideRequest, now: number): GreylistDecision {
      if (now > latest) latest = now;
      const s = greylistStep(
        { triplet: triplets.get(req.triplet), client: clients.get(req.client) },
        now,
        req.policy,
      );
      if (s.triplet) triplets.set(req.triplet, s.triplet, { ttl: ttlFor(s.triplet.last, req.policy.maxAge) });
      if (s.client) clients.set(req.client, s.client, { ttl: ttlFor(s.client.last, req.policy.maxAge) });
      return s.decision;
    },
    async inspect(triplet, client) {
      const t = triplets.get(triplet);
      const c = clients.get(client);
      return Object.assign({}, t ? { triplet: t } : {}, c ? { client: c } : {});
    },
    save(path = options.file) {
      if (path === undefined) return Promise.reject(new TypeError('memoryStore.save: no file given'));
      // One save at a time, in call order: a later save writes the later state.
      saving = saving.catch(() => 0).then(() => writeAtomically(path));
      return saving;
    },
    async load(path = options.file) {
      if (path === undefined) throw new TypeError('memoryStore.load: no file given');
      let text: string;
      try {
        text = await readFile(path, 'utf8');
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') return 0;
        throw err;
      }
      const data = JSON.parse(text) as Partial<FileFormat>;
      if (data.format !== 'mxguard-greylist' || data.version !== 1) {
        throw new TypeError(`${path}: not an mxguard greylist file (format/version)`);
      }
      let n = 0;
      for (const [k, v] of Object.entries(data.triplets ?? {})) {
        if (!Array.isArray(v) || v.length !== 3 || !v.every(Number.isFinite)) continue;
        const [first, last, count] = v;
        if (first > last) continue;
        if (last > latest) latest = last;
        triplets.set(k, { first, last, count }, { ttl: ttlFor(last, loadedMaxAge) });
        n++;
      }
      for (const [k, v] of Object.entries(data.clients ?? {})) {
        if (!Array.isArray(v) || v.length !== 2 || !v.every(Number.isFinite)) continue;
        const [count, last] = v;
        if (last > latest) latest = last;
        clients.set(k, { count, last }, { ttl: ttlFor(last, loadedMaxAge) });
        n++;
      }
      return n;
    },
    async close() {
      if (timer) clearInterval(timer);
      timer = undefined;
      if (options.file !== undefined) await store.save();
    },
  };

  async function writeAtomically(path: string): Promise<number> {
    const data: FileFormat = { format: 'mxguard-greylist', version: 1, triplets: {}, clients: {} };
    let n = 0;
    // Least recently used first, so a load re-inserts them in the same LRU order.
    for (const [k, v] of [...triplets.entries()].reverse()) {
      data.triplets[k] = [v.first, v.last, v.count];
      n++;
    }
    for (const [k, v] of [...clients.entries()].reverse()) {
      data.clients[k] = [v.count, v.last];
      n++;
    }
    // Write a temporary file beside the target, flush it, then rename over the target: a crash
    // leaves either the old file or the new one, never half of one (rename(2) is atomic).
    const tmp = `${path}.${Buffer.from(random(16)).toString('hex')}.tmp`;
    const fh = await open(tmp, 'w', 0o600);
    try {
      await fh.writeFile(JSON.stringify(data));
      await fh.sync();
    } catch (err) {
      await fh.close();
      await unlink(tmp).catch(() => {});
      throw err;
    }
    await fh.close();
    await rename(tmp, path);
    return n;
  }

  const every = options.saveInterval ?? 0;
  if (every > 0 && options.file !== undefined) {
    timer = setInterval(() => {
      store.save().catch((err: unknown) => {
        log.error({ err: String(err), file: options.file }, 'greylist: saving the memory store failed');
      });
    }, every);
    timer.unref();
  }
  return store;
}
