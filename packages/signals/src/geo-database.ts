/**
 * A MaxMind-format (MMDB) database read with mmdb-lib, loaded from a path and reloaded when the
 * file changes. GeoLite2-Country, GeoLite2-City and GeoLite2-ASN (and the commercial GeoIP2 and
 * DB-IP "lite" databases, which share the format) all answer here: we read `country.iso_code`,
 * `registered_country.iso_code` and `autonomous_system_number`/`autonomous_system_organization`
 * (top level in ASN databases, under `traits` in the enterprise ones).
 *
 * Why mmdb-lib: it is the reader under the `maxmind` package (same maintainers, MaxMind among
 * them), takes a Buffer and does no I/O of its own, so loading, watching and the choice of what to
 * do on a bad file stay here, where the clock and the logger are injected.
 */
import { readFileSync, statSync, watch } from 'node:fs';
import { readFile, stat } from 'node:fs/promises';
import { basename, dirname, resolve } from 'node:path';
import type { Logger } from '@mxguard/core';
import { requirePositiveIntegers, silentLogger } from '@mxguard/core';
import { LRUCache } from 'lru-cache';
import { Reader } from 'mmdb-lib';
import { isPublic, parseAddress } from './ip.js';

/** What the database says about an address. */
export interface GeoRecord {
  /** ISO 3166-1 alpha-2 code of the country where the address is used (`country.iso_code`), upper case. */
  readonly country?: string;
  /** ISO code of the country where the network is registered (`registered_country.iso_code`). */
  readonly registeredCountry?: string;
  /** Autonomous system number, when the database has one (GeoLite2-ASN, enterprise `traits`). */
  readonly asn?: number;
  /** Autonomous system organisation, bounded to 128 characters. */
  readonly asOrg?: string;
}

/** Why a lookup has no answer. None of these is a finding against the client. */
export type GeoMissReason =
  /** Not an IP address. */
  | 'invalid'
  /** Private, loopback, link-local, CGNAT, documentation...: nothing to geolocate. */
  | 'not-public'
  /** The database has no record for the address. */
  | 'not-in-database'
  /** The lookup failed (a corrupt tree or data section): logged, treated as unknown. */
  | 'error';

/** The answer of a lookup: a record, or why there is none. */
export type GeoAnswer =
  | ({
      /** The database has a record for the address. */
      readonly found: true;
      /** The address looked up. */
      readonly address: string;
    } & GeoRecord)
  | {
      /** No record: see `reason`. */
      readonly found: false;
      /** The address looked up. */
      readonly address: string;
      /** Why there is no record (not in the database, a private address, a bad address, ...). */
      readonly reason: GeoMissReason;
    };

/** Anything that geolocates an address: a `GeoDatabase`, or a fake in tests. */
export interface GeoLookup {
  /** The record of an IPv4 or IPv6 address, or why there is none; never throws. */
  lookup(address: string): GeoAnswer;
}

/** Starts watching a file and calls `onChange` when it may have changed. Returns how to stop. */
export type FileWatcher = (
  path: string,
  onChange: () => void,
  log: Logger,
) => {
  /** Stops watching. */
  close(): void;
};

/**
 * The default watcher: `fs.watch` on the file's directory, filtered by file name. Watching the
 * directory (not the file) is what survives the usual update pattern, a new file renamed over the
 * old one (geoipupdate does this), which leaves a file watch on the old inode. Not persistent: it
 * never keeps the process alive.
 */
export const directoryWatcher: FileWatcher = (path, onChange, log) => {
  const name = basename(path);
  try {
    const w = watch(dirname(path), { persistent: false }, (_event, filename) => {
      if (filename === null || filename === name) onChange();
    });
    w.on('error', (err) =>
      log.warn({ path, err: String(err) }, 'geo database watcher failed; reload() still works'),
    );
    return { close: () => w.close() };
  } catch (err) {
    log.warn({ path, err: String(err) }, 'cannot watch the geo database; reload() still works');
    return { close() {} };
  }
};

/** Options of `GeoDatabase`. */
export interface GeoDatabaseOptions {
  /** Path to the .mmdb file. */
  readonly path: string;
  /** Where reloads and their failures are logged. */
  readonly log?: Logger;
  /**
   * How to notice that the file changed: `true` for `directoryWatcher`, `false` for no watching
   * (call `reload()` yourself, e.g. from a SIGHUP handler), or a watcher of your own (tests pass
   * one they trigger by hand).
   * @default true
   */
  readonly watch?: boolean | FileWatcher;
  /**
   * Decoded records kept in memory (mmdb-lib's per-offset cache). Bounded: a GeoLite2-City has
   * hundreds of thousands of distinct records.
   * @default 10000
   */
  readonly cacheSize?: number;
  /**
   * Bytes the decoded records may hold, as {@link decodedBytes} counts them (a GeoLite2-City
   * record with names in eight languages is a few KB). Past it the least recently used go first.
   * @default 8388608 (8 MiB)
   */
  readonly cacheBytes?: number;
}

/**
 * Bytes a decoded record is counted as: 64 an object or array, 64 + 2 a character of each key and
 * string, 16 a number or boolean, nested values included. A walk of the record, made once when it
 * enters the cache: after a miss, which has just decoded the same record, so of the same order.
 */
export function decodedBytes(value: unknown, depth = 0): number {
  if (typeof value === 'string') return 64 + 2 * value.length;
  if (value === null || typeof value !== 'object' || depth > 16) return 16;
  let n = 64;
  if (Array.isArray(value)) {
    for (const v of value) n += 8 + decodedBytes(v, depth + 1);
    return n;
  }
  for (const [k, v] of Object.entries(value)) n += 16 + 2 * k.length + decodedBytes(v, depth + 1);
  return n;
}

/** What `reload()` did. */
export interface ReloadOutcome {
  /** `reloaded`: the new file is in use. `unchanged`: same file as loaded. `failed`: kept the old database. */
  readonly status: 'reloaded' | 'unchanged' | 'failed';
  /** Why it failed, for `failed`. */
  readonly error?: string;
}

interface Loaded {
  readonly reader: Reader<Record<string, unknown>>;
  readonly signature: string;
  readonly databaseType: string;
  readonly buildEpoch: Date;
  /** mmdb-lib's cache of decoded records. */
  readonly records: LRUCache<number, object>;
}

/**
 * Parses an MMDB buffer and checks that it is usable; throws a descriptive Error when it is not.
 * mmdb-lib parses the metadata only, so a truncated file whose metadata survived (or a tree that
 * points past the end) is caught by the bounds check and a probe lookup here, not at the first
 * client.
 */
function parse(buf: Buffer, path: string, cache: { size: number; bytes: number }): Omit<Loaded, 'signature'> {
  let reader: Reader<Record<string, unknown>>;
  const records = new LRUCache<number, object>({
    max: cache.size,
    maxSize: cache.bytes,
    sizeCalculation: (record) => decodedBytes(record),
  });
  try {
    reader = new Reader<Record<string, unknown>>(buf, { cache: records });
  } catch (err) {
    throw new Error(`${path}: not a MaxMind DB file (${err instanceof Error ? err.message : String(err)})`);
  }
  const m = reader.metadata;
  if (m.binaryFormatMajorVersion !== 2) {
    throw new Error(`${path}: MaxMind DB format ${m.binaryFormatMajorVersion}, expected 2`);
  }
  if (![24, 28, 32].includes(m.recordSize))
    throw new Error(`${path}: record size ${m.recordSize} is not 24, 28 or 32`);
  if (m.searchTreeSize + 16 > buf.length)
    throw new Error(`${path}: search tree runs past the end of the file`);
  try {
    reader.get(m.ipVersion === 6 ? '2001:db8::1' : '192.0.2.1');
    reader.get('192.0.2.1');
  } catch (err) {
    throw new Error(
      `${path}: corrupt search tree or data (${err instanceof Error ? err.message : String(err)})`,
    );
  }
  return { reader, databaseType: m.databaseType, buildEpoch: m.buildEpoch, records };
}

const ISO = /^[A-Z]{2}$/;

function iso(v: unknown): string | undefined {
  if (typeof v !== 'object' || v === null) return undefined;
  const code = (v as { iso_code?: unknown }).iso_code;
  if (typeof code !== 'string') return undefined;
  const up = code.toUpperCase();
  return ISO.test(up) ? up : undefined;
}

function asnOf(rec: Record<string, unknown>): { asn?: number; asOrg?: string } {
  const traits =
    typeof rec.traits === 'object' && rec.traits !== null ? (rec.traits as Record<string, unknown>) : {};
  const n = rec.autonomous_system_number ?? traits.autonomous_system_number;
  const o = rec.autonomous_system_organization ?? traits.autonomous_system_organization;
  const out: { asn?: number; asOrg?: string } = {};
  if (typeof n === 'number' && Number.isInteger(n) && n >= 0 && n <= 0xffffffff) out.asn = n;
  if (typeof o === 'string') out.asOrg = o.slice(0, 128);
  return out;
}

/** Extracts the fields mxguard uses from any GeoIP2/GeoLite2-shaped record. */
export function geoRecordOf(rec: unknown): GeoRecord {
  if (typeof rec !== 'object' || rec === null) return {};
  const r = rec as Record<string, unknown>;
  const out: { country?: string; registeredCountry?: string; asn?: number; asOrg?: string } = { ...asnOf(r) };
  const c = iso(r.country);
  const rc = iso(r.registered_country);
  if (c) out.country = c;
  if (rc) out.registeredCountry = rc;
  return out;
}

/**
 * A MaxMind-format database from a file. Loads synchronously at construction (a bad path or file
 * is a startup error: fail loudly), then reloads when the file changes. A reload that fails (a
 * partial download, a corrupt file) keeps the database in use and logs an error: lookups never
 * stop working because of an update.
 */
export class GeoDatabase implements GeoLookup {
  /** The .mmdb file it reads (and reloads when it changes). */
  readonly path: string;
  readonly #log: Logger;
  readonly #cache: { size: number; bytes: number };
  #loaded: Loaded;
  #watcher: { close(): void } | undefined;
  #reloading: Promise<ReloadOutcome> | undefined;
  #again = false;
  #generation = 0;

  constructor(options: GeoDatabaseOptions) {
    if (typeof options.path !== 'string' || options.path.length === 0) {
      throw new TypeError('GeoDatabase: path must be a non-empty string');
    }
    this.path = resolve(options.path);
    this.#log = options.log ?? silentLogger;
    this.#cache = { size: options.cacheSize ?? 10_000, bytes: options.cacheBytes ?? 8 * 1024 * 1024 };
    requirePositiveIntegers({ cacheSize: this.#cache.size, cacheBytes: this.#cache.bytes }, 'GeoDatabase: ');
    let buf: Buffer;
    let signature: string;
    try {
      const st = statSync(this.path);
      signature = `${st.ino}:${st.size}:${st.mtimeMs}`;
      buf = readFileSync(this.path);
    } catch (err) {
      throw new Error(
        `GeoDatabase: cannot read ${this.path}: ${err instanceof Error ? err.message : String(err)}`,
      );
    }
    this.#loaded = this.#make(buf, signature);
    this.#log.info(
      { path: this.path, type: this.#loaded.databaseType, built: this.#loaded.buildEpoch.toISOString() },
      'geo database loaded',
    );
    const w = options.watch ?? true;
    const watcher = w === true ? directoryWatcher : w === false ? undefined : w;
    if (watcher) this.#watcher = watcher(this.path, () => void this.#reloadIfChanged(), this.#log);
  }

  #make(buf: Buffer, signature: string): Loaded {
    // spread: once
    return { ...parse(buf, this.path, this.#cache), signature };
  }

  /** Decoded records cached, and their bytes as counted against `cacheBytes`. */
  get cached(): {
    /** Records cached. */
    readonly entries: number;
    /** Their bytes, against `cacheBytes`. */
    readonly bytes: number;
  } {
    return { entries: this.#loaded.records.size, bytes: this.#loaded.records.calculatedSize };
  }

  /** The database type from its metadata (e.g. `GeoLite2-Country`). */
  get databaseType(): string {
    return this.#loaded.databaseType;
  }

  /** When the loaded database was built. */
  get buildEpoch(): Date {
    return this.#loaded.buildEpoch;
  }

  /** Increases by one at each successful reload: lets callers (and tests) see that one happened. */
  get generation(): number {
    return this.#generation;
  }

  /** Geolocates an address. Never throws. */
  lookup(address: string): GeoAnswer {
    const a = parseAddress(address);
    if (!a) return { found: false, address: String(address).slice(0, 64), reason: 'invalid' };
    if (!isPublic(a)) return { found: false, address: a.text, reason: 'not-public' };
    let rec: Record<string, unknown> | null;
    try {
      rec = this.#loaded.reader.get(a.text);
    } catch (err) {
      this.#log.error({ path: this.path, address: a.text, err: String(err) }, 'geo lookup failed');
      return { found: false, address: a.text, reason: 'error' };
    }
    if (!rec) return { found: false, address: a.text, reason: 'not-in-database' };
    return { found: true, address: a.text, ...geoRecordOf(rec) };
  }

  /**
   * Reads the file again and switches to it if it parses; otherwise keeps the database in use.
   * Calls made while a reload runs are coalesced into one more reload after it.
   * @param force reload even when the file's inode, size and mtime are those of the loaded one. @default true
   */
  reload(force = true): Promise<ReloadOutcome> {
    if (this.#reloading) {
      this.#again = true;
      return this.#reloading;
    }
    const run = async (): Promise<ReloadOutcome> => {
      let outcome: ReloadOutcome;
      do {
        this.#again = false;
        outcome = await this.#reloadOnce(force);
      } while (this.#again);
      return outcome;
    };
    this.#reloading = run().finally(() => {
      this.#reloading = undefined;
    });
    return this.#reloading;
  }

  async #reloadIfChanged(): Promise<void> {
    await this.reload(false);
  }

  async #reloadOnce(force: boolean): Promise<ReloadOutcome> {
    try {
      const st = await stat(this.path);
      const signature = `${st.ino}:${st.size}:${st.mtimeMs}`;
      if (!force && signature === this.#loaded.signature) return { status: 'unchanged' };
      const buf = await readFile(this.path);
      const next = this.#make(buf, signature);
      this.#loaded = next;
      this.#generation++;
      this.#log.info(
        { path: this.path, type: next.databaseType, built: next.buildEpoch.toISOString() },
        'geo database reloaded',
      );
      return { status: 'reloaded' };
    } catch (err) {
      const error = err instanceof Error ? err.message : String(err);
      this.#log.error(
        { path: this.path, err: error },
        'geo database reload failed; keeping the previous one',
      );
      return { status: 'failed', error };
    }
  }

  /** Stops watching the file. Lookups keep working on the loaded database. */
  close(): void {
    this.#watcher?.close();
    this.#watcher = undefined;
  }
}

/**
 * Opens each database path once and shares it between checks (`geo` and `os-fingerprint` read the
 * same file): pass one in the factories' env. `close()` stops every watcher.
 */
export class GeoDatabases {
  readonly #open = new Map<string, GeoDatabase>();
  constructor(private readonly options: Omit<GeoDatabaseOptions, 'path'> = {}) {}

  /** The database at `path`, opened on first use. */
  open(path: string): GeoDatabase {
    const key = resolve(path);
    let db = this.#open.get(key);
    if (!db) {
      // spread: once
      db = new GeoDatabase({ ...this.options, path: key });
      this.#open.set(key, db);
    }
    return db;
  }

  /** Reloads every open database (e.g. on SIGHUP). */
  async reloadAll(): Promise<ReloadOutcome[]> {
    return Promise.all([...this.#open.values()].map((db) => db.reload()));
  }

  /** Stops every database's file watcher; lookups keep working. */
  close(): void {
    for (const db of this.#open.values()) db.close();
    this.#open.clear();
  }
}
