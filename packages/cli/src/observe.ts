/**
 * What `serve` and `policy` show on their `--http` listener: `/metrics` (Prometheus) and `/health`,
 * and whatever else is mounted (the status page). Everything reads the runtime in force at the
 * time of the request, so a reload is seen at once.
 */
import type { Logger } from '@mxguard/core';
import { DecisionHub } from './decisions.js';
import { type HealthReport, type HttpListener, healthHandler, metricsHandler, startHttp } from './http.js';
import { MxguardMetrics } from './metrics.js';
import type { Runtime } from './runtime.js';

/** What a mount gets: the decisions, the metrics, the runtime in force. */
export interface ObserveContext {
  /** Every decision, with its trace and time (subscribe once; it outlives reloads). */
  readonly hub: DecisionHub;
  /** The process's metrics. */
  readonly metrics: MxguardMetrics;
  /** The runtime in force now (it changes on a reload). */
  readonly runtime: () => Runtime;
  /** The listener's logger. */
  readonly log: Logger;
}

/** Adds routes to the listener; may return a function run when the listener closes. */
export type Mount = (http: HttpListener, ctx: ObserveContext) => undefined | (() => void);

/** The routes every `--http` listener has: `/metrics` and `/health`. */
export const DEFAULT_MOUNTS: readonly Mount[] = [
  (http, ctx) => {
    http.mount('/metrics', metricsHandler(ctx.metrics));
    http.mount(
      '/health',
      healthHandler(() => healthOf(ctx.runtime())),
    );
    return undefined;
  },
];

/** Is a store reachable? A Redis-backed one when its connection is ready; one in memory always. */
export function storeUp(store: object): boolean {
  const s = store as { client?: { status?: unknown }; redis?: { status?: unknown } };
  const conn = s.client ?? s.redis;
  if (conn && typeof conn.status === 'string') return conn.status === 'ready';
  return true;
}

/** `/health` of a runtime: every store reachable and no configured DNS list disabled. */
export function healthOf(rt: Runtime): HealthReport {
  const stores: Record<string, 'up' | 'down'> = {};
  const lists: Record<string, string> = {};
  const problems: string[] = [];
  for (const [name, store] of Object.entries(rt.stores ?? {})) {
    stores[name] = storeUp(store) ? 'up' : 'down';
    if (stores[name] === 'down') problems.push(`store ${name} is not reachable`);
  }
  for (const l of rt.lists?.() ?? []) {
    lists[`${l.list} ${l.kind}`] = l.state;
    if (l.state === 'disabled')
      problems.push(`DNS list ${l.list} (${l.kind}) is disabled: it lists everything`);
  }
  return { status: problems.length === 0 ? 'ok' : 'unhealthy', stores, lists, problems };
}

/** Options of {@link Observability}. */
export interface ObservabilityOptions {
  /** `HOST:PORT` parsed; absent: no listener (the hub and metrics still work). */
  readonly listen?: {
    /** The address to listen on. */
    readonly host: string;
    /** The port; 0 picks a free one. */
    readonly port: number;
  };
  /** Allow a listen address that is not loopback (`--http-allow-remote`). */
  readonly allowRemote?: boolean;
  /** Where the listener logs. */
  readonly log: Logger;
  /** @default DEFAULT_MOUNTS */
  readonly mounts?: readonly Mount[];
}

/**
 * The decision hub and the metrics of one `serve` or `policy` process, and its `--http` listener
 * when asked for. Made before the first runtime, so every runtime (the first and each reload's)
 * reports to the same hub and metrics.
 */
export class Observability {
  /** Every decision of every runtime of the process. */
  readonly hub: DecisionHub;
  /** The process's metrics, fed from the hub. */
  readonly metrics: MxguardMetrics;
  #http: HttpListener | undefined;
  #unmount: (() => void)[] = [];
  #runtime: (() => Runtime) | undefined;
  readonly #options: ObservabilityOptions;

  constructor(options: ObservabilityOptions) {
    this.#options = options;
    this.hub = new DecisionHub(options.log);
    this.metrics = new MxguardMetrics(undefined, { defaultMetrics: true });
    this.metrics.observe(this.hub);
  }

  /** What `createRuntime` takes so the runtime reports here. */
  get runtimeOptions(): {
    /** The hub the runtime emits its decisions into. */
    observers: DecisionHub;
    /** The metrics its resolver and stores count into. */
    metrics: MxguardMetrics;
  } {
    return { observers: this.hub, metrics: this.metrics };
  }

  /** Follows a new runtime (the first, or a reload's): its DNS lists and stores. */
  follow(current: () => Runtime): void {
    this.#runtime = current;
    const rt = current();
    this.metrics.setLists(rt.listZones ?? []);
    this.metrics.watchLists(() => this.#runtime?.().lists?.() ?? []);
  }

  /** Starts the listener, if one was asked for; resolves with its address. */
  async start(connections: () => number): Promise<string | undefined> {
    this.metrics.watchConnections(connections);
    const listen = this.#options.listen;
    if (!listen) return undefined;
    const http = await startHttp({
      host: listen.host,
      port: listen.port,
      log: this.#options.log,
      ...(this.#options.allowRemote ? { allowRemote: true } : {}),
    });
    this.#http = http;
    const ctx: ObserveContext = {
      hub: this.hub,
      metrics: this.metrics,
      runtime: () => {
        if (!this.#runtime) throw new Error('no runtime yet');
        return this.#runtime();
      },
      log: this.#options.log,
    };
    for (const m of this.#options.mounts ?? DEFAULT_MOUNTS) {
      const undo = m(http, ctx);
      if (undo) this.#unmount.push(undo);
    }
    return http.address;
  }

  /** Unmounts the routes and closes the listener. */
  async close(): Promise<void> {
    for (const u of this.#unmount.splice(0)) u();
    await this.#http?.close();
  }
}
