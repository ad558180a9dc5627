// Hand-written types of haraka-plugin-mxguard (index.js is plain CommonJS, as Haraka loads it).
// Haraka calls these with the plugin object as `this`; they are not meant to be called directly.

/** Haraka's hook callback: `next()`, `next(OK)`, `next(DENY, msg)`, ... */
export type Next = (code?: number, msg?: unknown) => void;

/** Haraka: called once when the plugin loads. Reads config/mxguard.json; throws on a malformed one. */
export declare function register(this: unknown): void;
/** Haraka: builds the runtime in a single-process Haraka (`nodes=0`). */
export declare function hook_init_master(this: unknown, next: Next, server?: unknown): void;
/** Haraka: builds the runtime in each cluster worker. */
export declare function hook_init_child(this: unknown, next: Next): void;
/** Haraka: answers Haraka's reverse-DNS step with mxguard's own PTR lookup (none offline). */
export declare function hook_lookup_rdns(this: unknown, next: Next, connection: unknown): void;
/** Haraka: starts the PTR lookup and the DNS-list prefetch. */
export declare function hook_connect(this: unknown, next: Next, connection: unknown): void;
/** Haraka: counts the connection gone (for the `"http"` listener's connection gauge). */
export declare function hook_disconnect(this: unknown, next: Next, connection: unknown): void;
/** Haraka: judges the connect (once), helo and mail stages. */
export declare function hook_mail(this: unknown, next: Next, connection: unknown, params: unknown[]): void;
/** Haraka: refuses relaying, judges the recipient, says OK for our domains. */
export declare function hook_rcpt(this: unknown, next: Next, connection: unknown, params: unknown[]): void;
/** Haraka: judges the data stage with the header block. */
export declare function hook_data_post(this: unknown, next: Next, connection: unknown): void;
/** Haraka: closes the runtime's stores. */
export declare function shutdown(this: unknown): void;

/** A verdict's reply, as `@mxguard/core`'s `Reply`. */
export interface Reply {
  readonly code: number;
  readonly enhanced: string;
  readonly text: string;
}

/** Haraka's `DSN` object: Haraka writes `code` and then `reply` (which starts with the enhanced code). */
export interface Dsn {
  readonly code: number;
  readonly reply: string | string[];
}

/** The pure parts, for tests. */
export declare const _internals: {
  /** `config/mxguard.json` split into the policy config and the DNS choice. */
  settingsOf(raw: unknown): {
    policy: Record<string, unknown>;
    offline: boolean;
    resolver: string | undefined;
    /** The time budget of each hook's answer, ms, when the config sets it. */
    budget: number | undefined;
    /** `HOST:PORT` of the metrics, health and status listener (`"http"`), when the config sets it. */
    http: string | undefined;
    /** `"httpAllowRemote": true`: `http` may be an address that is not loopback. */
    httpAllowRemote?: true;
    /**
     * `"logTrace"`: how much of the trace each decision line carries: `said` (the default), the
     * steps that said something; `full`, every step.
     */
    logTrace: 'said' | 'full';
  };
  /**
   * The budget of each hook: the configured one, else 10 s, never closer than 1.25 s to Haraka's
   * plugin timeout (seconds; 0: none). Throws on a configured budget Haraka would cut short.
   */
  budgetOf(settings: { budget: number | undefined }, pluginTimeoutSeconds: unknown): number;
  /** A reply as `next()` arguments: DENY (5xx), DENYSOFT (4xx) or DENYSOFTDISCONNECT (421), with a DSN. */
  haraka(reply: Reply): [number, Dsn];
  /** A decision's refusal as `next()` arguments, or undefined to go on. */
  refusalOf(decision: { action: string; reply?: Reply }): [number, Dsn] | undefined;
  /** The address without the `::ffff:` of an IPv4-mapped IPv6 address. */
  stripMapped(address: string | undefined): string;
  /** Lower-cased domain of an address. */
  domainOf(address: string): string;
};
