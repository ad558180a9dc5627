import type { IncomingMessage, ServerResponse } from 'node:http';
import { STATUS_CSS, STATUS_ICON, STATUS_JS } from './assets.js';
import type { StatusBoard } from './board.js';
import { renderPage, type StatusHealth } from './page.js';

/** Where the status page gets what it shows besides the board. */
export interface StatusProviders {
  /** `mxguard serve`, `mxguard policy`. */
  readonly title: string;
  /** The same report as `/health`: stores reachable, DNS lists healthy. */
  readonly health?: () => Promise<StatusHealth>;
  /** What is off and why. */
  readonly notes?: () => readonly string[];
  /** The page's clock. @default Date.now */
  readonly now?: () => number;
}

/**
 * No script, style, image or frame from anywhere but this listener, and no inline script or style
 * at all: an address or a HELO that gets past the escaping still cannot run.
 */
export const STATUS_CSP =
  "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

const HEADERS = {
  'x-content-type-options': 'nosniff',
  'content-security-policy': STATUS_CSP,
  'referrer-policy': 'no-referrer',
  'x-frame-options': 'DENY',
  'cache-control': 'no-store',
} as const;

/** A longer search is cut: nothing on the page is longer than an address. */
const MAX_QUERY = 256;

type Route = (req: IncomingMessage, res: ServerResponse) => Promise<void>;

function send(req: IncomingMessage, res: ServerResponse, status: number, type: string, body: string): void {
  res.writeHead(status, { ...HEADERS, 'content-type': type, 'content-length': Buffer.byteLength(body) });
  res.end(req.method === 'HEAD' ? undefined : body);
}

/**
 * The status page's routes, by path, for the `--http` listener: `/status` (the page; `?q=` searches
 * the decisions), `/status.css`, `/status.js`, its icon `/status.svg`, and `/` sending a browser to `/status`.
 */
export function statusRoutes(board: StatusBoard, providers: StatusProviders): Record<string, Route> {
  const page: Route = async (req, res) => {
    const url = new URL(req.url ?? '/', 'http://status.invalid');
    const q = (url.searchParams.get('q') ?? '').slice(0, MAX_QUERY);
    let health: StatusHealth | undefined;
    try {
      health = providers.health ? await providers.health() : undefined;
    } catch (err) {
      health = {
        ok: false,
        stores: { health: `error: ${err instanceof Error ? err.message : String(err)}` },
        lists: {},
      };
    }
    const html = renderPage(
      board,
      {
        title: providers.title,
        health,
        notes: providers.notes?.() ?? [],
        now: (providers.now ?? Date.now)(),
      },
      q,
    );
    send(req, res, 200, 'text/html; charset=utf-8', html);
  };
  return {
    // Mounted as a prefix on a listener that matches `/` as one: only `/` itself is ours.
    '/': async (req, res) => {
      if (new URL(req.url ?? '/', 'http://status.invalid').pathname !== '/') {
        send(req, res, 404, 'text/plain; charset=utf-8', 'not found\n');
        return;
      }
      res.writeHead(302, { ...HEADERS, location: '/status', 'content-length': 0 });
      res.end();
    },
    '/status': page,
    '/status.css': async (req, res) => send(req, res, 200, 'text/css; charset=utf-8', STATUS_CSS),
    '/status.js': async (req, res) => send(req, res, 200, 'text/javascript; charset=utf-8', STATUS_JS),
    '/status.svg': async (req, res) => send(req, res, 200, 'image/svg+xml', STATUS_ICON),
  };
}

/**
 * A request handler for the status routes alone (read-only: anything but GET and HEAD is 405).
 * Answers and returns true for a path of the page; returns false for any other path (or a request
 * target that is not a URL), untouched.
 */
export function statusHandler(
  board: StatusBoard,
  providers: StatusProviders,
): (req: IncomingMessage, res: ServerResponse) => boolean {
  const routes = statusRoutes(board, providers);
  return (req, res) => {
    let path: string;
    try {
      path = new URL(req.url ?? '/', 'http://status.invalid').pathname;
    } catch {
      // A request target that is no URL (`GET http://[`) is no path of the page: the caller's.
      return false;
    }
    const route = routes[path];
    if (!route) return false;
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { ...HEADERS, allow: 'GET, HEAD', 'content-type': 'text/plain; charset=utf-8' });
      res.end('method not allowed: the status page is read-only\n');
      return true;
    }
    route(req, res).catch((err: unknown) => {
      if (!res.headersSent) res.writeHead(500, { ...HEADERS, 'content-type': 'text/plain; charset=utf-8' });
      res.end(`error: ${err instanceof Error ? err.message : String(err)}\n`);
    });
    return true;
  };
}
