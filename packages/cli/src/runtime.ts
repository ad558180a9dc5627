import { readFile } from 'node:fs/promises';
import type { Clock, Logger, Policy, ReverseDns, Session } from '@mxguard/core';
import { ConfigError } from '@mxguard/core';
import type { DnsTiming } from '@mxguard/dns';
import { type MxguardConfig, validateConfig } from './config.js';
import type { ListStatus } from './metrics.js';

/**
 * A clock that follows the session being replayed when it carries a time, and the system clock
 * otherwise. The CLI is where mxguard meets the real world, so this is the one place that reads
 * `Date.now()`.
 */
export class ReplayClock implements Clock {
  private fixed: number | undefined;
  now(): number {
    return this.fixed ?? Date.now();
  }
  /** Pins the clock to `ms`, or releases it to the system clock with `undefined`. */
  set(ms: number | undefined): void {
    this.fixed = ms;
  }
}

/** A mistake on the command line: exit 2 with a message that names the flag. */
export class UsageError extends Error {
  /** `UsageError`: the kind, in messages and logs. */
  override readonly name = 'UsageError';
}

/** Everything a CLI command needs to judge sessions. */
export interface Runtime {
  /** The policy built from the config: its chain, site and what is off. */
  readonly policy: Policy;
  /** The clock of the chain and the stores (set per session by `check` and `replay`). */
  readonly clock: ReplayClock;
  /** Looks up and forward-confirms the client's PTR; absent offline. */
  readonly lookupRdns?: (ip: string) => Promise<ReverseDns>;
  /** The resolver's per-try timeout and tries (sized from the command's budget); absent offline. */
  readonly resolverTiming?: DnsTiming;
  /** Starts the lookups a session will need (PTR, DNS lists) so later checks find them cached. */
  readonly prefetch?: (session: Session) => void;
  /**
   * Told about each finding an adapter sees on the wire (`earlyTalker`, `unauthorizedPipelining`):
   * feeds the client network's reputation record (`points.protocolViolation`), so a client that
   * talks early and hangs up before any command is judged still counts.
   */
  readonly onFlag?: (session: Session, flag: string) => void;
  /**
   * Looks at every table file the checks read (access tables, rdns-dynamic patterns) now, instead
   * of at their next use: for a SIGHUP. A table that no longer parses keeps the old one (logged).
   */
  readonly reloadTables?: () => void;
  /** The stores of the policy by name (greylist, reputation, callout), for `/health`. */
  readonly stores?: Readonly<Record<string, object>>;
  /** The configured DNS lists and the health of each now (none offline). */
  readonly lists?: () => readonly ListStatus[];
  /** The zones of the configured DNS lists, for counting lookups by list. */
  readonly listZones?: readonly string[];
  /** What is off and why, for the user. */
  readonly notes: readonly string[];
  /** The runtime's logger. */
  readonly log: Logger;
  /** Closes the stores and file watchers it opened (a store shared with a reload stays open). */
  close(): Promise<void>;
}

/** Reads and validates a JSON config file, with errors that name the file and the place in it. */
export async function loadConfig(path: string | undefined): Promise<MxguardConfig> {
  if (path === undefined) return {};
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    throw new ConfigError('', `${path}: cannot read: ${err instanceof Error ? err.message : String(err)}`);
  }
  let v: unknown;
  try {
    v = JSON.parse(text) as unknown;
  } catch (err) {
    throw new ConfigError('', `${path}: not JSON: ${err instanceof Error ? err.message : String(err)}`);
  }
  return validateConfig(v);
}

/** A logger writing one JSON object a line to a stream (stderr for the CLI). */
export function jsonLogger(
  write: (line: string) => void,
  level: 'debug' | 'info' | 'warn' | 'error' = 'info',
): Logger {
  const order = { debug: 0, info: 1, warn: 2, error: 3 } as const;
  const emit = (l: keyof typeof order) => (obj: object, msg?: string) => {
    if (order[l] < order[level]) return;
    write(`${JSON.stringify({ level: l, ...(msg ? { msg } : {}), ...obj })}\n`);
  };
  return { debug: emit('debug'), info: emit('info'), warn: emit('warn'), error: emit('error') };
}
