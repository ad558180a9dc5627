import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { type AddressInfo, isIP } from 'node:net';
import type { Logger } from '@mxguard/core';
import type { MxguardMetrics } from './metrics.js';
import { UsageError } from './runtime.js';

/** Answers one request of the `--http` listener (GET or HEAD). */
export type HttpHandler = (req: IncomingMessage, res: ServerResponse) => void | Promise<void>;

/** The `--http` listener of `serve` and `policy`. */
export interface HttpListener {
  /** `HOST:PORT` it listens on (IPv6 in brackets). */
  readonly address: string;
  /**
   * Adds a route: `path` is matched exactly, or, when it ends with `/` (`/` itself aside), as a
   * prefix (the longest prefix wins; an exact path before any prefix). Mounting a path again
   * replaces its handler.
   */
  mount(path: string, handler: HttpHandler): void;
  /** Stops listening and closes the open connections. */
  close(): Promise<void>;
}

/** Options of {@link startHttp}. */
export interface HttpOptions {
  /** The address to listen on (loopback unless `allowRemote`). */
  readonly host: string;
  /** The port; 0 picks a free one. */
  readonly port: number;
  /**
   * Listen on an address that is not loopback. The listener has no authentication and shows
   * traffic (and, on the status page, addresses): off by default, `--http-allow-remote` to allow.
   */
  readonly allowRemote?: boolean;
  /** Where request errors are logged. */
  readonly log: Logger;
  /** Routes to mount at once (more with `mount`). */
  readonly routes?: Readonly<Record<string, HttpHandler>>;
}

/** Is `host` a loopback address (127.0.0.0/8, ::1, `localhost`)? */
export function isLoopback(host: string): boolean {
  if (host === 'localhost') return true;
  if (isIP(host) === 4) return host.startsWith('127.');
  const h = host.toLowerCase();
  return h === '::1' || h === '0:0:0:0:0:0:0:1' || /^::ffff:127\./.test(h);
}

/**
 * Refuses (a UsageError) to listen on `host` when it is not loopback, unless `allowRemote`: the
 * listener has no authentication. `shown` is the address as the user wrote it.
 */
export function refuseRemote(host: string, allowRemote: boolean | undefined, shown = host): void {
  if (allowRemote || isLoopback(host)) return;
  throw new UsageError(
    `--http ${shown}: not a loopback address; the listener has no authentication (add --http-allow-remote to listen there anyway)`,
  );
}

/**
 * Starts the read-only HTTP listener: the routes mounted on it, 404 for any other path, 405 for a
 * method other than GET and HEAD. Small and bounded: 64 connections, 5 s for the headers, 10 s a
 * request. A handler that throws answers 500 and is logged.
 */
export async function startHttp(options: HttpOptions): Promise<HttpListener> {
  const { host, port, log } = options;
  refuseRemote(host, options.allowRemote);
  const exact = new Map<string, HttpHandler>();
  const prefixes = new Map<string, HttpHandler>();
  const mount = (path: string, handler: HttpHandler) => {
    if (!path.startsWith('/'))
      throw new TypeError(`mount: a path starts with "/", got ${JSON.stringify(path)}`);
    if (path.length > 1 && path.endsWith('/')) prefixes.set(path, handler);
    else exact.set(path, handler);
  };
  for (const [path, h] of Object.entries(options.routes ?? {})) mount(path, h);
  const route = (path: string): HttpHandler | undefined => {
    const e = exact.get(path);
    if (e) return e;
    let best: string | undefined;
    for (const p of prefixes.keys()) if (path.startsWith(p) && (!best || p.length > best.length)) best = p;
    return best === undefined ? undefined : prefixes.get(best);
  };
  const server = createServer((req, res) => {
    let path: string;
    try {
      path = new URL(req.url ?? '/', 'http://localhost').pathname;
    } catch {
      res.writeHead(400, { 'content-type': 'text/plain' }).end('bad request\n');
      return;
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD', 'content-type': 'text/plain' }).end('method not allowed\n');
      return;
    }
    const handler = route(path);
    if (!handler) {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found\n');
      return;
    }
    Promise.resolve()
      .then(() => handler(req, res))
      .catch((err: unknown) => {
        const msg = err instanceof Error ? err.message : String(err);
        log.error({ event: 'http-error', path, err: msg });
        if (!res.headersSent) res.writeHead(500, { 'content-type': 'text/plain' });
        res.end('internal error\n');
      });
  });
  server.requestTimeout = 10_000;
  server.headersTimeout = 5_000;
  server.maxConnections = 64;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  server.on('error', (err: Error) => log.error({ event: 'http-error', err: err.message }));
  const a = server.address() as AddressInfo;
  return {
    address: `${a.address.includes(':') ? `[${a.address}]` : a.address}:${a.port}`,
    mount,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

/** `/metrics`: the registry in Prometheus' text format. */
export function metricsHandler(metrics: MxguardMetrics): HttpHandler {
  return async (req, res) => {
    const body = await metrics.registry.metrics();
    res.writeHead(200, { 'content-type': metrics.registry.contentType });
    res.end(req.method === 'HEAD' ? undefined : body);
  };
}

/** What `/health` answers: 200 with `status: "ok"`, or 503 with what is wrong. */
export interface HealthReport {
  /** `ok` (200) or `unhealthy` (503). */
  readonly status: 'ok' | 'unhealthy';
  /** Each store by name: `up` or `down`. */
  readonly stores: Readonly<Record<string, 'up' | 'down'>>;
  /** Each configured DNS list (`zone kind`): healthy, disabled (lists everything), unprobed. */
  readonly lists: Readonly<Record<string, string>>;
  /** One line for each thing that is not well. */
  readonly problems: readonly string[];
}

/** `/health` for load balancers and process managers. */
export function healthHandler(report: () => Promise<HealthReport> | HealthReport): HttpHandler {
  return async (req, res) => {
    const h = await report();
    res.writeHead(h.status === 'ok' ? 200 : 503, {
      'content-type': 'application/json',
      'cache-control': 'no-store',
    });
    res.end(req.method === 'HEAD' ? undefined : `${JSON.stringify(h)}\n`);
  };
}
