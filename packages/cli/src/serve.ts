import { mkdir, readFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import type { Logger, LogTrace, Session } from '@mxguard/core';
import { ConfigError, DEADLINE_GRACE_MS } from '@mxguard/core';
import { DnsResolver } from '@mxguard/dns';
import {
  type Listen,
  type PolicyServerOptions,
  policyLimitsFromConfig,
  startPolicyServer,
} from '@mxguard/postfix';
import {
  DEFAULT_BUDGET_MS,
  type GatewayOptions,
  type GatewayTls,
  gatewayLimitsFromConfig,
  startGateway,
} from '@mxguard/smtp';
import { type MxguardConfig, validateConfig } from './config.js';
import type { DecisionHub } from './decisions.js';
import { refuseRemote } from './http.js';
import type { MxguardMetrics } from './metrics.js';
import { DEFAULT_MOUNTS, type Mount, Observability } from './observe.js';
import type { Redactor } from './privacy.js';
import { loadConfig, type Runtime, UsageError } from './runtime.js';
import { statusMount } from './status/mount.js';
import { createRuntime, DNS_CHECKS, StorePool } from './wiring.js';

/** The `--http` listener's settings, shared by `serve` and `policy`. */
export interface HttpFlags {
  /** `HOST:PORT` of the metrics, health (and status page) listener; off when absent. */
  readonly http?: string | undefined;
  /** Allow `--http` on an address that is not loopback. @default false */
  readonly httpAllowRemote?: boolean | undefined;
  /** What the listener serves. @default DEFAULT_MOUNTS (/metrics, /health) and the status page */
  readonly mounts?: readonly Mount[];
  /** How the status page shows addresses: the log's (`--log-privacy`). @default in full */
  readonly redactor?: Redactor | undefined;
}

/**
 * The hub, metrics and (when `--http` is given) listener of a command or an adapter's process (the
 * Haraka plugin), with the status page; the flags checked first (a UsageError).
 */
export function observability(options: HttpFlags & { log: Logger }, title: string): Observability {
  const listen = options.http === undefined ? undefined : parseListen(options.http, '127.0.0.1', '--http');
  // Checked here, before anything is started, and again by startHttp.
  if (listen) refuseRemote(listen.host, options.httpAllowRemote, options.http);
  return new Observability({
    ...(listen ? { listen } : {}),
    ...(options.httpAllowRemote ? { allowRemote: true } : {}),
    log: options.log,
    mounts: options.mounts ?? [...DEFAULT_MOUNTS, statusMount({ title, redactor: options.redactor })],
  });
}

/** What SIGHUP needs besides the runtime: where the config came from, and the log file. */
export interface ReloadOptions {
  /** The config file, read again on SIGHUP; without one, SIGHUP rebuilds the built-in defaults. */
  readonly configPath?: string | undefined;
  /** Reopens the log file (after logrotate moved it). */
  readonly reopenLog?: () => void;
}

const message = (err: unknown) => (err instanceof Error ? err.message : String(err));

/**
 * Runs `run` on each SIGHUP, one at a time (a burst of signals while one runs is one more run). A
 * run that throws is logged and leaves what is in force; the next SIGHUP runs again.
 */
function onHangup(log: () => Logger, run: () => Promise<void>): () => void {
  let queue = Promise.resolve();
  let queued = false;
  const on = () => {
    if (queued) return;
    queued = true;
    queue = queue.then(async () => {
      queued = false;
      try {
        await run();
      } catch (err) {
        log().error({ event: 'reload-failed', err: message(err), keeping: 'the config in force' });
      }
    });
  };
  process.on('SIGHUP', on);
  return () => process.off('SIGHUP', on);
}

/**
 * Builds the runtime of the config file as it is now, or says why not: read, validated and built
 * whole (every table file read, every store acquired) before anything is swapped. A refusal is one
 * log line with the config error (its path in the config) and counted; the runtime in force stays,
 * and its table files are looked at again.
 */
async function reloadedRuntime<T>(
  current: Runtime,
  options: RuntimeForOptions & ReloadOptions & { stores: StorePool },
  metrics: MxguardMetrics,
  /** Reads the command's own part of the new config (its limits); throws to refuse the reload. */
  own: (config: MxguardConfig) => T,
): Promise<{ runtime: Runtime; own: T } | undefined> {
  const log = current.log;
  try {
    const config = await loadConfig(options.configPath);
    const mine = own(config);
    const next = await runtimeFor(config, options);
    metrics.reloads.inc({ outcome: 'ok' });
    log.info(
      {
        event: 'reloaded',
        config: options.configPath ?? null,
        checks: next.policy.chain.links.map((l) => l.check.name),
      },
      'config reloaded: new connections get it, those open finish under the old one',
    );
    return { runtime: next, own: mine };
  } catch (err) {
    metrics.reloads.inc({ outcome: 'refused' });
    const path = err instanceof ConfigError ? err.path : undefined;
    log.error(
      {
        event: 'reload-refused',
        config: options.configPath ?? null,
        ...(path !== undefined ? { path } : {}),
        err: (err instanceof Error ? err.message : String(err)).replace(/\n/g, '; '),
      },
      'reload refused: the config in force stays',
    );
    current.reloadTables?.();
    return undefined;
  }
}

/**
 * Refuses a reload whose config changes the time budget: it sized the resolver's timeouts at
 * start (`--budget` on the command line overrides the config, and is not re-read either).
 */
function sameBudget(path: string, configured: number, inForce: number): void {
  if (configured !== inForce)
    throw new ConfigError(path, `changed: the time budget is read at start; restart to apply it`);
}

/** Swaps in a reloaded runtime: the hub and metrics follow it; the old one closes once drained. */
function swapRuntime(
  obs: Observability,
  set: (rt: Runtime) => void,
  old: Runtime,
  next: Runtime,
  drained: Promise<void>,
): void {
  set(next);
  obs.follow(() => next);
  // The old runtime closes (releasing the stores the new one does not share) once the work it
  // judges has finished.
  drained
    .then(() => old.close())
    .catch((err) => next.log.error({ event: 'runtime-close-failed', err: message(err) }));
}

/** The banner line of the `--http` listener. */
function httpLine(address: string): string {
  return `status: http://${address}/ (metrics: /metrics, health: /health)`;
}

export interface ServeOptions extends HttpFlags, ReloadOptions {
  /** `--listen`: `HOST:PORT`, `[IPv6]:PORT` or `PORT`. */
  readonly listen: string;
  /** `--spool`: the folder accepted messages are written to when there is no relay. */
  readonly spool?: string | undefined;
  /** The MTA behind us (`smtp://HOST:PORT`, `lmtp://HOST:PORT`, `lmtp:/SOCKET`); else the spool. */
  readonly relay?: string | undefined;
  /** STARTTLS key and certificate files, re-read on SIGHUP. */
  readonly tls?: TlsFiles;
  /** `--offline`: no DNS at all; the DNS checks are skipped and say so in the trace. */
  readonly offline: boolean;
  /** `--resolver`: the DNS server to ask, `host:port` (default: the system's). */
  readonly resolver?: string;
  /** Where the decision lines and errors go. */
  readonly log: Logger;
  /** Where the banner goes. @default process.stdout */
  readonly out?: (line: string) => void;
  /** The time budget of each SMTP command's answer, ms. @default DEFAULT_BUDGET_MS (10000) */
  readonly budget?: number | undefined;
  /** `--log-trace`: how much of the trace each decision line carries; kept across SIGHUP. @default 'said' */
  readonly logTrace?: LogTrace | undefined;
}

/** Where `serve` reads its STARTTLS key and certificate. */
export interface TlsFiles {
  /** `--tls-key`: the private key file, PEM. */
  readonly keyFile: string;
  /** `--tls-cert`: the certificate chain file, PEM. */
  readonly certFile: string;
  /** The oldest TLS version offered. @default 'TLSv1.2' */
  readonly minVersion?: GatewayTls['minVersion'];
}

async function readTls(files: TlsFiles): Promise<GatewayTls> {
  const [key, cert] = await Promise.all([readFile(files.keyFile, 'utf8'), readFile(files.certFile, 'utf8')]);
  return { key, cert, ...(files.minVersion ? { minVersion: files.minVersion } : {}) };
}

/** Splits `host:port`, `[v6]:port` or `port`. */
export function parseListen(
  s: string,
  defaultHost = '127.0.0.1',
  flag = '--listen',
): {
  /** The host (the default when only a port was given). */
  host: string;
  /** The port. */
  port: number;
} {
  const m = /^(?:\[([^\]]+)\]|([^:]*)):(\d+)$/.exec(s) ?? /^()()(\d+)$/.exec(s);
  const port = Number(m?.[3]);
  if (!m || !Number.isInteger(port) || port < 0 || port > 65535) {
    throw new UsageError(`${flag} must be HOST:PORT, [IPv6]:PORT or PORT; got "${s}"`);
  }
  return { host: m[1] || m[2] || defaultHost, port };
}

/**
 * Decides whether DNS can be used: with `--resolver` or `--offline` the user said; otherwise one
 * quick question to the system's resolver, and offline if it does not answer, so the demo works on
 * a machine without internet and says which checks are off.
 */
async function dnsReachable(options: {
  offline: boolean;
  resolver?: string;
  dnsProbe?: () => Promise<boolean>;
}): Promise<boolean> {
  if (options.offline) return false;
  if (options.resolver) return true;
  if (options.dnsProbe) return options.dnsProbe();
  // example.com has had an A record since RFC 2606; a resolver that cannot find it (no network,
  // or a sandbox that answers NXDOMAIN to everything) would make every domain look nonexistent.
  const probe = new DnsResolver({ timeout: 1500, tries: 1 });
  const r = await probe.a('example.com');
  return r.ok;
}

function enrichOf(rt: Runtime): ((s: Session) => Promise<Partial<Session>>) | undefined {
  const { lookupRdns, prefetch } = rt;
  if (!lookupRdns) return undefined;
  return async (s) => {
    prefetch?.(s);
    return { rdns: await lookupRdns(s.clientAddress) };
  };
}

/**
 * The time budget of one policy request, ms: below the `timeout=10s` of the `check_policy_service`
 * line `mxguard policy` prints, with 1.75 s to spare after the 250 ms grace.
 */
export const POLICY_BUDGET = 8000;

/** The Postfix `timeout=` to print for a policy budget: 2 s more, in whole seconds, at least 10 s. */
export function postfixTimeoutFor(budgetMs: number): number {
  return Math.max(10, Math.ceil(budgetMs / 1000) + 2);
}

/** What {@link runtimeFor} needs: the DNS choice of the command line, and the logger. */
export interface RuntimeForOptions {
  /** `--offline`: no DNS at all; the DNS checks are skipped and say so in the trace. */
  readonly offline: boolean;
  /** `--resolver`: the DNS server to ask, `host:port` (default: the system's). */
  readonly resolver?: string;
  /** Where the decision lines and errors go. */
  readonly log: Logger;
  /** The time budget of one decision (ms); sizes the resolver's timeouts. See createRuntime. */
  readonly budget?: number;
  /**
   * Replaces the one quick question to the system's resolver (tests).
   * @default asks the system resolver for example.com's A record
   */
  readonly dnsProbe?: () => Promise<boolean>;
  /** Told about every decision (metrics, status page). */
  readonly observers?: DecisionHub;
  /** Stores kept across reloads. */
  readonly stores?: StorePool;
  /** Counts DNS lookups, store operations, greylist outcomes, findings. */
  readonly metrics?: MxguardMetrics;
}

/**
 * The runtime of `serve` and `policy`: with live DNS when it answers, else offline with a note that
 * names every check that is off because DNS is unreachable (the README's main job on a machine
 * without internet).
 */
export async function runtimeFor(config: MxguardConfig, options: RuntimeForOptions): Promise<Runtime> {
  // A config error stops the start at once, before the DNS probe.
  validateConfig(config);
  const online = await dnsReachable(options);
  const rt = await createRuntime(config, {
    offline: !online,
    ...(options.resolver ? { resolver: options.resolver } : {}),
    ...(options.budget !== undefined ? { budget: options.budget } : {}),
    ...(options.observers ? { observers: options.observers } : {}),
    ...(options.stores ? { stores: options.stores } : {}),
    ...(options.metrics ? { metrics: options.metrics } : {}),
    log: options.log,
  });
  if (!online && !options.offline) {
    return {
      ...rt,
      notes: [
        `DNS unreachable: ${[...DNS_CHECKS, 'callout'].join(', ')} and reverse DNS are off`,
        ...rt.notes.slice(1),
      ],
    };
  }
  return rt;
}

/** The banner line that says how long an answer may take and how the resolver is sized for it. */
function budgetLine(budget: number, what: string, rt: Runtime): string {
  const dns = rt.resolverTiming
    ? `; DNS: ${rt.resolverTiming.timeout} ms a try, ${rt.resolverTiming.tries} tries`
    : '';
  return `budget: ${budget} ms ${what} (no answer later than ${budget + DEADLINE_GRACE_MS} ms)${dns}`;
}

function untilSignal(): Promise<void> {
  return new Promise((res) => {
    const done = () => {
      process.off('SIGINT', done);
      process.off('SIGTERM', done);
      res();
    };
    process.on('SIGINT', done);
    process.on('SIGTERM', done);
  });
}

/**
 * The gateway `mxguard serve` starts for a runtime: its chain, our domains as the only recipient
 * domains (an inbound MX relays for no one), PTR lookups and DNS-list prefetch at connect, and the
 * adapter's findings (early talkers, unauthorized pipelining) fed to the reputation record.
 */
export function gatewayOptions(
  rt: Runtime,
  where: {
    spoolDir?: string;
    relay?: string;
    host: string;
    port: number;
    budget?: number | undefined;
    /** The config's `gateway` limits (see gatewayLimitsFromConfig). */
    limits?: Partial<GatewayOptions>;
    /** How much of the trace each decision line carries (`--log-trace`). @default 'said' */
    logTrace?: LogTrace | undefined;
  },
): GatewayOptions {
  const site = rt.policy.site;
  const enrich = enrichOf(rt);
  return {
    ...where.limits,
    chain: rt.policy.chain,
    log: rt.log,
    ...(where.relay ? { relay: where.relay } : { spoolDir: where.spoolDir as string }),
    host: where.host,
    port: where.port,
    clock: rt.clock,
    budgetMs: where.budget ?? DEFAULT_BUDGET_MS,
    // Without a resolver (--offline) no check makes a lookup that reads the deadline.
    deadlineContext: rt.resolverTiming !== undefined,
    recipientDomains: site.ourDomains,
    // Our own networks are exempt from the per-client connection limits.
    ourNetworks: site.ourNetworks,
    ...(site.ourHosts[0] ? { hostname: site.ourHosts[0] } : {}),
    ...(enrich ? { enrich } : {}),
    ...(rt.onFlag ? { onFlag: rt.onFlag } : {}),
    ...(where.logTrace ? { logTrace: where.logTrace } : {}),
  };
}

/** `mxguard serve`: the example gateway, until SIGINT/SIGTERM. */
export async function runServe(config: MxguardConfig, options: ServeOptions): Promise<number> {
  const out = options.out ?? ((l: string) => process.stdout.write(`${l}\n`));
  const { host, port } = parseListen(options.listen);
  const relay = options.relay;
  const spoolDir = relay ? undefined : resolve(options.spool ?? 'spool');
  if (spoolDir) await mkdir(spoolDir, { recursive: true });
  // A --budget flag overrides the config's gateway.budget; the other limits are the config's.
  const limits = gatewayLimitsFromConfig(config.gateway);
  const budget = options.budget ?? limits.budgetMs ?? DEFAULT_BUDGET_MS;
  const obs = observability(options, 'mxguard serve');
  const stores = new StorePool();
  const runtimeOptions = { ...options, budget, stores, ...obs.runtimeOptions };
  let rt = await runtimeFor(config, runtimeOptions);
  obs.follow(() => rt);
  const site = rt.policy.site;
  const tls = options.tls ? await readTls(options.tls) : undefined;
  const listenAt = {
    ...(relay ? { relay } : { spoolDir: spoolDir as string }),
    host,
    port,
    budget,
    limits: limits.options,
    // In every reload's options too: a SIGHUP keeps the flag.
    logTrace: options.logTrace,
  };
  const gw = await startGateway({ ...gatewayOptions(rt, listenAt), ...(tls ? { tls } : {}) });
  // SIGHUP: the log file reopened, the key and certificate re-read (renewed by certbot or the
  // like), the config and its table files read and swapped whole. Each part that fails keeps what
  // is in force and says why; new connections get what succeeded. The config's gateway limits
  // apply to new connections too.
  const tlsFiles = options.tls;
  const stopHangup = onHangup(
    () => rt.log,
    async () => {
      options.reopenLog?.();
      if (tlsFiles) {
        try {
          gw.reloadTls(await readTls(tlsFiles));
          rt.log.info({ event: 'tls-reloaded', cert: tlsFiles.certFile });
        } catch (err) {
          rt.log.error({
            event: 'tls-reload-failed',
            err: message(err),
            keeping: 'the key and certificate in force',
          });
        }
      }
      // The new config's gateway limits apply to new connections; its budget sized the resolver at
      // start, so a changed one (without --budget) is refused rather than silently ignored.
      const reloaded = await reloadedRuntime(rt, runtimeOptions, obs.metrics, (c) => {
        const l = gatewayLimitsFromConfig(c.gateway);
        if (options.budget === undefined)
          sameBudget('gateway.budget', l.budgetMs ?? DEFAULT_BUDGET_MS, budget);
        return l;
      });
      if (!reloaded) return;
      const next = reloaded.runtime;
      let drained: Promise<void>;
      try {
        drained = gw.reload(gatewayOptions(next, { ...listenAt, limits: reloaded.own.options }));
      } catch (err) {
        // Not swapped: the config in force stays whole, and what the new one opened is released.
        await next.close();
        throw err;
      }
      swapRuntime(obs, (r) => (rt = r), rt, next, drained);
    },
  );
  const http = await obs.start(() => gw.connections);
  const where = gw.host.includes(':') ? `[${gw.host}]:${gw.port}` : `${gw.host}:${gw.port}`;
  const domain = site.ourDomains[0] ?? 'example.com';
  out(`mxguard gateway listening on ${where} (our domains: ${site.ourDomains.join(', ')})`);
  out(relay ? `relay: ${relay} (the client's 250 comes after its 250)` : `spool: ${spoolDir}`);
  if (tls)
    out(
      `STARTTLS: offered (${tls.minVersion ?? 'TLSv1.2'} or newer; SIGHUP re-reads the key and certificate)`,
    );
  out(`checks: ${rt.policy.chain.links.map((l) => l.check.name).join(', ')}`);
  out(budgetLine(budget, 'an SMTP command', rt));
  if (http) out(httpLine(http));
  for (const n of rt.notes) out(`note: ${n}`);
  if (!options.offline && rt.lookupRdns) {
    out(
      'note: with live DNS, example.net publishes a null MX (RFC 7505), so sender-domain refuses it: put a sender address of your own in --from',
    );
  }
  out('try:');
  out(`  swaks --server ${where} --helo mail.example.net --from alice@example.net --to postmaster@${domain}`);
  out(
    `  swaks --server ${where} --helo localhost --from alice@example.net --to postmaster@${domain}   # refused: helo-claims-us`,
  );
  await untilSignal();
  out('mxguard gateway stopping');
  stopHangup();
  await obs.close();
  await gw.close();
  await rt.close();
  return 0;
}

export interface PolicyOptions extends HttpFlags, ReloadOptions {
  /** `--listen`: `HOST:PORT`, `[IPv6]:PORT` or `PORT`. */
  readonly listen?: string | undefined;
  /** `--socket`: a UNIX socket to listen on instead. */
  readonly socket?: string | undefined;
  /** `--offline`: no DNS at all; the DNS checks are skipped and say so in the trace. */
  readonly offline: boolean;
  /** `--resolver`: the DNS server to ask, `host:port` (default: the system's). */
  readonly resolver?: string;
  /** Where the decision lines and errors go. */
  readonly log: Logger;
  /** Where the banner goes. @default process.stdout */
  readonly out?: (line: string) => void;
  /** The time budget of one request, ms. @default POLICY_BUDGET (8000) */
  readonly budget?: number | undefined;
  /** `--log-trace`: how much of the trace each decision line carries; kept across SIGHUP. @default 'said' */
  readonly logTrace?: LogTrace | undefined;
}

/**
 * The policy server `mxguard policy` starts for a runtime: its chain, the PTR lookup and DNS-list
 * prefetch once a transaction, and the request's time budget (`limits.requestTimeout`).
 */
export function policyServerOptions(
  rt: Runtime,
  where: {
    listen: Listen;
    budget?: number | undefined;
    limits?: PolicyServerOptions['limits'];
    onLimit?: (limit: string) => void;
    /** How much of the trace each decision line carries (`--log-trace`). @default 'said' */
    logTrace?: LogTrace | undefined;
  },
): PolicyServerOptions {
  const enrich = enrichOf(rt);
  return {
    listen: where.listen,
    chain: rt.policy.chain,
    log: rt.log,
    clock: rt.clock,
    limits: { ...where.limits, requestTimeout: where.budget ?? POLICY_BUDGET },
    // Without a resolver (--offline) no check makes a lookup that reads the deadline.
    deadlineContext: rt.resolverTiming !== undefined,
    ...(enrich ? { enrich } : {}),
    ...(where.onLimit ? { onLimit: where.onLimit } : {}),
    ...(where.logTrace ? { logTrace: where.logTrace } : {}),
  };
}

/** `mxguard policy`: the Postfix policy server, until SIGINT/SIGTERM. */
export async function runPolicy(config: MxguardConfig, options: PolicyOptions): Promise<number> {
  const out = options.out ?? ((l: string) => process.stdout.write(`${l}\n`));
  if (options.listen && options.socket) throw new UsageError('--listen and --socket exclude each other');
  const listen = options.socket ? { path: options.socket } : parseListen(options.listen ?? '127.0.0.1:10023');
  // A --budget flag overrides the config's policy.budget; the other limits are the config's.
  const limits = policyLimitsFromConfig(config.policy);
  const budget = options.budget ?? limits.requestTimeout ?? POLICY_BUDGET;
  const obs = observability(options, 'mxguard policy');
  const stores = new StorePool();
  const runtimeOptions = { ...options, budget, stores, ...obs.runtimeOptions };
  let rt = await runtimeFor(config, runtimeOptions);
  obs.follow(() => rt);
  const onLimit = (limit: string) => obs.metrics.limits.inc({ limit });
  // The trace of the decision lines is set here, at start: a reload swaps the chain, not this.
  const logTrace = options.logTrace;
  const server = await startPolicyServer(
    policyServerOptions(rt, { listen, budget, limits, onLimit, logTrace }),
  );
  // SIGHUP: the log file reopened, the config and its table files read and swapped whole; a
  // request being judged finishes under the config it started with. The limits are read once, at
  // start.
  const stopHangup = onHangup(
    () => rt.log,
    async () => {
      options.reopenLog?.();
      // The policy server's limits are set at start: a config that changes them is refused, rather
      // than run with limits that are not the ones it says.
      const reloaded = await reloadedRuntime(rt, runtimeOptions, obs.metrics, (c) => {
        const l = policyLimitsFromConfig(c.policy);
        const same = (a: object) => JSON.stringify({ ...a, requestTimeout: undefined });
        if (same(l) !== same(limits))
          throw new ConfigError('policy', 'limits changed: they are read at start; restart to apply them');
        if (options.budget === undefined)
          sameBudget('policy.budget', l.requestTimeout ?? POLICY_BUDGET, budget);
        return l;
      });
      if (!reloaded) return;
      const next = reloaded.runtime;
      const p = policyServerOptions(next, { listen, budget });
      const drained = server.reload({ chain: p.chain, ...(p.enrich ? { enrich: p.enrich } : {}) });
      swapRuntime(obs, (r) => (rt = r), rt, next, drained);
    },
  );
  const http = await obs.start(() => server.connections);
  const a = server.address;
  const where =
    'path' in a ? `unix:${a.path}` : `inet:${a.host.includes(':') ? `[${a.host}]` : a.host}:${a.port}`;
  out(`mxguard policy server listening on ${where}`);
  out(budgetLine(budget, 'a request', rt));
  out(`checks: ${rt.policy.chain.links.map((l) => l.check.name).join(', ')}`);
  if (http) out(httpLine(http));
  for (const n of rt.notes) out(`note: ${n}`);
  out(
    `postfix main.cf: smtpd_recipient_restrictions = reject_unauth_destination, check_policy_service { ${where}, timeout=${postfixTimeoutFor(budget)}s, default_action=DUNNO }`,
  );
  await untilSignal();
  stopHangup();
  await obs.close();
  await server.close();
  await rt.close();
  return 0;
}
