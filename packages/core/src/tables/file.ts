/**
 * A table file that follows its file on disk: read and parsed at construction (a bad table is a
 * config error then), looked at again on use at most once a second (one stat), re-read and
 * re-parsed only when its size, modification time or inode changed. A new text that no longer
 * parses, or a file that went away, leaves the old table in force and is logged with the reason.
 * Postfix does the same check after each session (its daemons restart when a table changed,
 * "table ... has changed -- restarting"); mxguard swaps the table in place instead.
 *
 * The file system is passed in (core does no I/O of its own): the CLI passes `node:fs`.
 */
import type { Clock, Logger } from '../model.js';

/** The part of `node:fs` a table file uses. */
export interface TableFs {
  /** The file's size, modification time and inode, to notice a change or a replaced file. */
  statSync(path: string): {
    /** Bytes. */
    readonly size: number;
    /** Last modification, ms since the epoch. */
    readonly mtimeMs: number;
    /** The inode: a new file renamed over the old one has another. */
    readonly ino: number;
  };
  /** The file's text. */
  readFileSync(path: string, encoding: 'utf8'): string;
}

/** What table files need: a file system, a clock (for the once-a-second look) and a logger. */
export interface TableEnv {
  /** `node:fs`, or a fake in tests. */
  readonly fs: TableFs;
  /** When to look at the file again. */
  readonly clock: Clock;
  /** Where a failed reload is logged (the old table stays in force). */
  readonly log: Logger;
}

/** Largest table file read, in bytes: a bound on memory, far above any real access table. */
export const MAX_TABLE_BYTES = 16 * 1024 * 1024;
/** How often, at most, a table file is looked at on use (ms). */
export const TABLE_CHECK_INTERVAL_MS = 1000;

/** A parsed table that follows its file. */
export interface TableFile<T> {
  /** The file's path. */
  readonly path: string;
  /** The table in force, after looking at the file if the last look is a second old. */
  get(): T;
  /**
   * Looks at the file now (SIGHUP, or a test): re-reads it when it changed. Returns `true` when a
   * new table is in force, `false` when nothing changed, or the error that kept the old table.
   */
  reload(): true | false | Error;
}

type Stamp = { size: number; mtimeMs: number; ino: number };

/**
 * Loads `path` with `parse(text, path)` and follows it (see the module comment). Throws at
 * construction when the file cannot be read or does not parse.
 */
export function tableFile<T>(
  path: string,
  parse: (text: string, path: string) => T,
  env: TableEnv,
): TableFile<T> {
  const { fs, clock, log } = env;
  const read = (): { stamp: Stamp; value: T } => {
    const st = fs.statSync(path);
    if (st.size > MAX_TABLE_BYTES) throw new Error(`${path}: table larger than ${MAX_TABLE_BYTES} bytes`);
    const text = fs.readFileSync(path, 'utf8');
    return { stamp: { size: st.size, mtimeMs: st.mtimeMs, ino: st.ino }, value: parse(text, path) };
  };
  let current: { stamp: Stamp; value: T };
  try {
    current = read();
  } catch (e) {
    throw new TypeError(e instanceof Error ? e.message : String(e));
  }
  let lastLook = clock.now();
  /** The stamp of a text that failed, so a broken file is logged once, not every second. */
  let failed: Stamp | undefined;

  const reload = (): true | false | Error => {
    lastLook = clock.now();
    let st: Stamp;
    try {
      const s = fs.statSync(path);
      st = { size: s.size, mtimeMs: s.mtimeMs, ino: s.ino };
    } catch (e) {
      const err = e instanceof Error ? e : new Error(String(e));
      if (!failed || failed.size !== -1) {
        failed = { size: -1, mtimeMs: -1, ino: -1 };
        log.warn(
          { table: path, err: err.message },
          'table file unreadable; the table loaded before stays in force',
        );
      }
      return err;
    }
    const same = (a: Stamp | undefined) =>
      a !== undefined && a.size === st.size && a.mtimeMs === st.mtimeMs && a.ino === st.ino;
    if (same(current.stamp)) {
      failed = undefined;
      return false;
    }
    if (same(failed)) return false;
    try {
      current = read();
      failed = undefined;
      log.info({ table: path }, 'table file changed; new table in force');
      return true;
    } catch (e) {
      const err = e instanceof Error ? e : new Error(String(e));
      failed = st;
      log.warn(
        { table: path, err: err.message },
        'table file no longer parses; the table loaded before stays in force',
      );
      return err;
    }
  };

  return {
    path,
    get() {
      // A clock set back counts as time passed, so a table is never stuck on an old text.
      if (Math.abs(clock.now() - lastLook) >= TABLE_CHECK_INTERVAL_MS) reload();
      return current.value;
    },
    reload,
  };
}
