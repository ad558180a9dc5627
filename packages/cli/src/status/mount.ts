import { hostname } from 'node:os';
import type { HealthReport } from '../http.js';
import { healthOf, type Mount } from '../observe.js';
import type { Redactor } from '../privacy.js';
import { StatusBoard } from './board.js';
import { statusRoutes } from './handler.js';
import type { StatusHealth } from './page.js';

/** Options of {@link statusMount}: the status page on the `--http` listener. */
export interface StatusMountOptions {
  /** `mxguard serve`, `mxguard policy`; the host name is added. */
  readonly title: string;
  /** The log's privacy level (`--log-privacy`): the page shows addresses as the log writes them. */
  readonly redactor?: Redactor | undefined;
  /** Decisions kept. @default 500 */
  readonly maxEntries?: number;
  /** Bytes kept. @default 2 MiB */
  readonly maxBytes?: number;
}

/** `/health`'s report as the page shows it. */
export function statusHealth(h: HealthReport): StatusHealth {
  return { ok: h.status === 'ok', stores: h.stores, lists: h.lists, problems: h.problems };
}

/**
 * The status page on the `--http` listener of `serve` and `policy`: a board fed by the decision
 * hub (every decision of every runtime, across reloads), the health of the runtime in force, its
 * notes. The board lives as long as the listener.
 */
export function statusMount(options: StatusMountOptions): Mount {
  return (http, ctx) => {
    const board = new StatusBoard({
      clock: { now: () => ctx.runtime().clock.now() },
      ...(options.redactor ? { redactor: options.redactor } : {}),
      ...(options.maxEntries !== undefined ? { maxEntries: options.maxEntries } : {}),
      ...(options.maxBytes !== undefined ? { maxBytes: options.maxBytes } : {}),
    });
    const unsubscribe = ctx.hub.subscribe((e) => board.record(e.session, e.decision, undefined, e.at));
    const routes = statusRoutes(board, {
      title: `${options.title} on ${hostname()}`,
      health: async () => statusHealth(healthOf(ctx.runtime())),
      notes: () => ctx.runtime().notes,
      now: () => ctx.runtime().clock.now(),
    });
    for (const [path, handler] of Object.entries(routes)) http.mount(path, handler);
    return unsubscribe;
  };
}
