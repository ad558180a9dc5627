/**
 * The Postfix policy server: Postfix's smtpd asks it, through `check_policy_service`, at each
 * restriction list it is named in; it answers with the verdict of an mxguard chain.
 */

import { unlink } from 'node:fs/promises';
import { createServer, connect as netConnect, type Server, type Socket } from 'node:net';
import type { Chain, Clock, Decision, Logger, LogTrace, Session } from '@mxguard/core';
import {
  currentDeadline,
  DEADLINE_GRACE_MS,
  decisionRecord,
  logDecision,
  logTraceOf,
  requirePositiveIntegers,
  settleBy,
  systemClock,
  withinBudget,
} from '@mxguard/core';
import { LRUCache } from 'lru-cache';
import { type MappingOptions, READ_ATTRIBUTES, sessionOf } from './attributes.js';
import {
  deferIfPermitAction,
  formatAnswer,
  type PolicyRequest,
  ProtocolError,
  RequestParser,
  replyAction,
} from './protocol.js';

/** Where to listen: TCP on an address (port 0: any free port) or a UNIX socket. */
export type Listen =
  | {
      /** The address to listen on, such as `127.0.0.1` or `::1`. */
      readonly host: string;
      /** The TCP port; 0 picks a free one (read it back from `PolicyServer.address`). */
      readonly port: number;
    }
  | {
      /** The UNIX socket's path, such as Postfix's `private/mxguard` under its queue directory. */
      readonly path: string;
    };

/** Bounds on what clients can make the server hold. */
export interface PolicyLimits {
  /** Longest request line in bytes. @default 4096 */
  readonly maxLineLength?: number;
  /** Most attributes in one request. @default 100 */
  readonly maxAttributes?: number;
  /**
   * Milliseconds a connection may go without a whole request before it is closed: bytes that do
   * not complete a request (one byte a minute) do not count. Postfix closes its own idle policy
   * connections after `smtpd_policy_service_max_idle` (300s) and reconnects when needed, so this
   * is longer.
   * @default 330_000
   */
  readonly idleTimeout?: number;
  /**
   * Milliseconds a connection may stay open in all; then it is closed once its request in hand is
   * answered. Postfix closes its own after `smtpd_policy_service_max_ttl` (1000s) and reconnects,
   * so this is longer.
   * @default 1_100_000
   */
  readonly connectionLifetime?: number;
  /**
   * Most open connections. A new connection past it is served by closing the connection that has
   * waited longest since its last request (Postfix reconnects an idle policy connection it finds
   * closed, at no cost to mail); only when every connection is in the middle of a request is the
   * new one closed (Postfix then retries and, after `smtpd_policy_service_try_limit` attempts,
   * applies `default_action`). Each smtpd process keeps one connection (master.cf maxproc).
   * @default 256
   */
  readonly maxConnections?: number;
  /**
   * The time budget of one request (enrich plus chain), in milliseconds. When it runs out, every
   * DNS lookup of the request that has not finished answers as a temporary failure (queued ones are
   * never sent) and the chain answers with what it has, each check under its own rule for a
   * temporary failure (at most a 4xx). A request whose chain still has not answered
   * {@link DEADLINE_GRACE_MS} (250 ms) later (a store that hangs) is answered
   * `DEFER_IF_PERMIT Service temporarily unavailable`. So no answer takes longer than this plus
   * 250 ms: below the `timeout=10s` of the `check_policy_service` line `mxguard policy` prints,
   * so Postfix gets our answer instead of giving up and applying `default_action`.
   * @default 8000
   */
  readonly requestTimeout?: number;
  /**
   * Most transactions (`instance` values) whose attributes and enrichment are cached.
   * @default 10_000
   */
  readonly maxInstances?: number;
  /**
   * Milliseconds a transaction stays cached after its last request, on the injected clock.
   * @default 3_600_000
   */
  readonly instanceTtl?: number;
  /**
   * Bytes all cached transactions may hold together (their recipient lists, estimated as
   * {@link instanceBytes} counts them); past it the least recently used transactions are dropped.
   * A dropped transaction only loses `session.recipients` for its later requests.
   * @default 33_554_432 (32 MiB)
   */
  readonly maxInstanceBytes?: number;
  /**
   * Bytes the recipient list of one transaction may hold; past it (or past 1000 recipients,
   * Postfix's `smtpd_recipient_limit`) its oldest recipients are dropped.
   * @default 262_144 (256 KiB)
   */
  readonly maxRecipientBytes?: number;
}

/** Options of `startPolicyServer`. */
export interface PolicyServerOptions extends MappingOptions {
  /** Where to listen: a loopback TCP address and port, or a UNIX socket. */
  readonly listen: Listen;
  /** The chain evaluated for every request. */
  readonly chain: Chain;
  /**
   * Adds facts to a session (the lead wires PTR and DNS-list lookups here). Started when a
   * transaction (`instance`) is first seen, awaited before each evaluation of it; its result is
   * merged over what Postfix sent. A failure is logged and answered with DEFER_IF_PERMIT.
   */
  readonly enrich?: (session: Session) => Promise<Partial<Session>>;
  /** Where the server logs its errors and refused clients (a pino logger fits). */
  readonly log: Logger;
  /** Clock for the instance cache. @default systemClock */
  readonly clock?: Clock;
  /** Bounds on connections, line length, attributes and idle time; each has a default. */
  readonly limits?: PolicyLimits;
  /**
   * Told each time a limit is hit (for metrics): `connections` (a connection refused, every slot
   * answering), `connection-slot` (the longest idle connection closed to make room),
   * `request-budget` (a request's time budget ran out), and the malformed-request codes
   * `line-too-long`, `too-many-requests`, `too-many-attributes`, `no-equals`, `bad-name`.
   */
  readonly onLimit?: (limit: string) => void;
  /**
   * Whether each request's deadline is carried in the asynchronous context, for the DNS lookups
   * its chain makes (`currentDeadline`; see `BudgetOptions.context` in core). Give `false` when
   * the chain makes none (`mxguard policy --offline`): about 5 µs a request less. With an
   * `enrich` the context is carried whatever this says. Every answer keeps its time budget.
   * @default true
   */
  readonly deadlineContext?: boolean;
  /**
   * How an `accept` verdict is answered. `OK` ends Postfix's restriction list with a permit, so the
   * policy service must come after `reject_unauth_destination` (or every accept is a relay
   * permit); `DUNNO` lets Postfix's later restrictions decide.
   * @default 'OK'
   */
  readonly acceptAs?: 'OK' | 'DUNNO';
  /**
   * How much of the trace each decision line carries: `said`, the steps that said something (and
   * `steps`, how many links ran); `full`, every step. See core's `decisionRecord`.
   * @default 'said'
   */
  readonly logTrace?: LogTrace;
}

/** A running policy server. */
export interface PolicyServer {
  /** Where it listens: host and the real port, or the socket path. */
  readonly address: Listen;
  /** Open connections right now. */
  readonly connections: number;
  /**
   * Judges the requests that arrive from now on with a new chain (and enrichment); the requests
   * being judged finish with the old one. Resolves once they have, when the old chain's resources
   * may be freed. A Postfix connection is not pinned to a chain: it lives up to 1000 s, and a new
   * config should not wait that long.
   */
  reload(policy: Pick<PolicyServerOptions, 'chain' | 'enrich'>): Promise<void>;
  /** Stops listening, closes every connection and waits for them. */
  close(): Promise<void>;
}

/** The default time budget of a policy request, ms (below the `timeout=10s` Postfix is told). */
export const DEFAULT_REQUEST_TIMEOUT = 8000;

/** What an `enrich` that has not finished by the request's deadline gives: an unknown, not a crash. */
const ENRICH_UNFINISHED: Partial<Session> = {
  rdns: { names: [], error: 'temporary' },
  flags: { enrichFailed: true },
};

/** The answer when we cannot judge: temporary, and only if nothing later rejects. Never 5xx. */
export const UNAVAILABLE = 'DEFER_IF_PERMIT Service temporarily unavailable';

interface InstanceState {
  enriched?: Promise<Partial<Session>>;
  /** Recipients of this transaction we did not refuse, in order. */
  recipients: string[];
  /** What `recipients` holds, as {@link recipientBytes} counts it. */
  recipientBytes: number;
}

/** Bytes counted for one transaction besides its recipients (the entry, its key, the enrichment). */
export const INSTANCE_OVERHEAD_BYTES = 1024;

/**
 * Bytes counted for one recipient: two per character (V8 keeps a string with a non-Latin-1
 * character in two-byte form; most addresses take half this) plus 32 for the string's header and
 * its slot in the list.
 */
export function recipientBytes(address: string): number {
  return 32 + 2 * address.length;
}

/** Bytes counted for one transaction. */
export function instanceBytes(state: { readonly recipientBytes: number }): number {
  return INSTANCE_OVERHEAD_BYTES + state.recipientBytes;
}

/** Turns a chain's decision into the policy action. */
export function actionOf(d: Decision, acceptAs: 'OK' | 'DUNNO' = 'OK'): string {
  if (d.action === 'next' || !d.reply) return 'DUNNO';
  if (d.action === 'accept') return acceptAs;
  if (d.action === 'defer') {
    // The chain resolves DEFER_IF_PERMIT within itself; if the deciding step was one, hand the
    // decision on to Postfix as DEFER_IF_PERMIT so Postfix's own later restrictions may still reject.
    const step = d.trace.find((s) => s.check === d.check && s.ifPermit && !s.warn);
    if (step) return deferIfPermitAction(d.reply);
  }
  return replyAction(d.reply);
}

/** Starts a policy server. Resolves once it listens. */
export async function startPolicyServer(options: PolicyServerOptions): Promise<PolicyServer> {
  const { log } = options;
  /** The chain in force and the requests it is judging. */
  interface Generation {
    readonly chain: Chain;
    readonly enrich: PolicyServerOptions['enrich'];
    busy: number;
  }
  let current: Generation = { chain: options.chain, enrich: options.enrich, busy: 0 };
  const limits = options.limits ?? {};
  const clock = options.clock ?? systemClock;
  const maxConnections = limits.maxConnections ?? 256;
  const idleTimeout = limits.idleTimeout ?? 330_000;
  const connectionLifetime = limits.connectionLifetime ?? 1_100_000;
  const maxInstanceBytes = limits.maxInstanceBytes ?? 32 * 1024 * 1024;
  const maxRecipientBytes = limits.maxRecipientBytes ?? 256 * 1024;
  const requestTimeout = limits.requestTimeout ?? DEFAULT_REQUEST_TIMEOUT;
  const acceptAs = options.acceptAs ?? 'OK';
  const deadlineContext = options.deadlineContext ?? true;
  const logRecord = { trace: logTraceOf(options.logTrace, 'startPolicyServer') };
  const parserLimits = {
    maxLineLength: limits.maxLineLength ?? 4096,
    maxAttributes: limits.maxAttributes ?? 100,
  };
  // spread: once
  const parserOptions = { ...parserLimits, keep: READ_ATTRIBUTES };
  requirePositiveIntegers(
    {
      maxConnections,
      idleTimeout,
      connectionLifetime,
      requestTimeout,
      maxInstanceBytes,
      maxRecipientBytes,
      ...parserLimits,
    },
    'limits.',
  );
  const instances = new LRUCache<string, InstanceState>({
    max: limits.maxInstances ?? 10_000,
    ttl: limits.instanceTtl ?? 3_600_000,
    updateAgeOnGet: true,
    ttlResolution: 0,
    perf: clock,
    maxSize: maxInstanceBytes,
    sizeCalculation: instanceBytes,
  });
  /**
   * Open connections. `last` is the number of the request a connection last sent (one count for the
   * server), so the longest idle is the one with the least: nothing is reordered per request.
   */
  const sockets = new Map<Socket, { busy: () => boolean; conn: number; last: number }>();
  let connectionIds = 0;
  let requests = 0;

  /**
   * Answers not yet written, by connection. Those made in one turn of the event loop go out at its
   * end, one write after another (`writeAll`), rather than each in the middle of the turn's
   * judging: measured, about a tenth less CPU a request at thousands of requests a second
   * (docs/PERFORMANCE.md). An answer waits only for the rest of its turn. A connection we close has
   * its answers written first (`closeAnswered`). At most one entry a connection.
   */
  const unwritten = new Map<Socket, string>();
  let writing = false;
  function writeSoon(socket: Socket, text: string): void {
    const held = unwritten.get(socket);
    unwritten.set(socket, held === undefined ? text : held + text);
    if (!writing) {
      writing = true;
      setImmediate(writeAll);
    }
  }
  function writeAll(): void {
    writing = false;
    for (const [s, text] of unwritten) if (!s.destroyed) s.write(text);
    unwritten.clear();
  }
  /** Closes a connection after the answers it is owed: `end` (a FIN after them) or `destroy`. */
  function closeAnswered(socket: Socket, how: 'end' | 'destroy'): void {
    const text = unwritten.get(socket);
    if (text !== undefined) {
      unwritten.delete(socket);
      if (!socket.destroyed) socket.write(text);
    }
    if (how === 'end') socket.end();
    else socket.destroy();
  }

  function limitHit(limit: string): void {
    try {
      options.onLimit?.(limit);
    } catch (err) {
      log.error({ err: errText(err) }, 'onLimit failed');
    }
  }

  /**
   * Judges a request with the chain in force; a failure is logged and answered as unavailable. One
   * async function from the request to its action: a layer more is a promise more a request.
   */
  async function judge(req: PolicyRequest, conn: number): Promise<string> {
    const gen = current;
    const { chain, enrich } = gen;
    gen.busy++;
    try {
      const mapped = sessionOf(req, options);
      if (!mapped.ok) {
        log.warn({ conn, why: mapped.why }, 'policy request not judged');
        return 'DUNNO';
      }
      let session = mapped.session;
      const instance = req.get('instance');
      let state: InstanceState | undefined;
      // A transaction seen for the first time is cached once judged, at its size then: one set,
      // not a set now and a delete and set once its recipient is added.
      let fresh = false;
      if (instance) {
        state = instances.get(instance);
        if (!state) {
          state = { recipients: [], recipientBytes: 0 };
          fresh = true;
        }
      }
      if (enrich) {
        let enriched: Promise<Partial<Session>>;
        if (state) {
          state.enriched ??= enrich(session);
          enriched = state.enriched;
        } else {
          enriched = enrich(session);
        }
        let extra: Partial<Session>;
        try {
          // Started by an earlier request of the transaction, it may outlive this one's deadline.
          extra = await settleBy(enriched, currentDeadline(), () => ENRICH_UNFINISHED);
        } catch (err) {
          // Forget the failure so the next request of this transaction tries again.
          if (state && state.enriched === enriched) state.enriched = undefined;
          log.error({ conn, instance, err: errText(err) }, 'policy enrich failed');
          return UNAVAILABLE;
        }
        // Object.assign, not `{ ...session, ...extra }`: Node 20's V8 makes a new hidden class for
        // every object spread and then given keys of its own, a microsecond or more each time
        // (docs/DECISIONS.md, "Object spread on the hot path").
        const flags = extra.flags ? Object.assign({}, session.flags, extra.flags) : session.flags;
        session = Object.assign({}, session, extra, {
          stage: session.stage,
          clientAddress: session.clientAddress,
          flags,
        });
      }
      if (state) {
        // Postfix's recipient_count is authoritative: recipients we let through may still have been
        // refused by a later restriction.
        // A copy (at most 1000 entries, maxRecipientBytes), since a check may keep the session.
        const count = session.flags?.postfixRecipientCount;
        const recipients =
          typeof count !== 'number' ? state.recipients : count === 0 ? [] : state.recipients.slice(-count);
        if (recipients.length > 0) session = Object.assign({}, session, { recipients });
      }
      const decision = await chain.evaluate(session);
      if (
        state &&
        session.stage === 'rcpt' &&
        session.rcptTo !== undefined &&
        decision.action !== 'reject' &&
        decision.action !== 'defer'
      ) {
        const rcpt = session.rcptTo;
        const list = state.recipients;
        list.push(rcpt);
        state.recipientBytes += recipientBytes(rcpt);
        let drop = 0;
        let bytes = state.recipientBytes;
        while (drop < list.length && (list.length - drop > 1000 || bytes > maxRecipientBytes)) {
          bytes -= recipientBytes(list[drop] ?? '');
          drop++;
        }
        if (drop > 0) list.splice(0, drop);
        state.recipientBytes = bytes;
        // Set again so the cache counts what it grew by (and drops the least recently used past
        // maxInstanceBytes). One that alone would exceed the total is dropped (never at the defaults).
        // (lru-cache sizes an entry only when it is set with a new value, hence the delete.)
        if (instance && !fresh && instances.peek(instance) === state) {
          instances.delete(instance);
          instances.set(instance, state);
        }
      }
      // A new transaction is cached only when it has something to remember: a recipient let
      // through, or its enrich in flight. One whose recipient was refused or deferred (most of a
      // spam run's) would be an empty entry a later request makes again anyway.
      if (instance && state && fresh && (state.recipients.length > 0 || state.enriched !== undefined))
        instances.set(instance, state);
      const action = actionOf(decision, acceptAs);
      // The decision line of every adapter; the session is Postfix's instance (one SMTP transaction).
      // The record gets `conn` added, not copied into a new object with it: once a request.
      const record = decisionRecord(session, decision, instance ?? `conn-${conn}`, logRecord);
      record.conn = conn;
      logDecision(log, record);
      return action;
    } catch (err) {
      log.error({ conn, err: errText(err) }, 'policy evaluation failed');
      return UNAVAILABLE;
    } finally {
      gen.busy--;
    }
  }

  /** The action of a request judged within its time budget (told, when the budget ran out). */
  function answer(req: PolicyRequest, conn: number): Promise<string> {
    return withinBudget(
      requestTimeout,
      () => judge(req, conn),
      () => UNAVAILABLE,
      { context: deadlineContext || current.enrich !== undefined },
    ).then((r) => {
      if (r.late || r.expired) budgetRanOut(r, conn);
      return r.value;
    });
  }

  function budgetRanOut(r: { late: boolean; value: string }, conn: number): void {
    limitHit('request-budget');
    if (r.late) {
      log.error(
        { conn, ms: requestTimeout + DEADLINE_GRACE_MS, why: 'no decision within the time budget' },
        'policy request timed out',
      );
    } else {
      log.warn(
        { conn, ms: requestTimeout, action: r.value },
        'policy request: time budget ran out, unfinished lookups counted as temporary failures',
      );
    }
  }

  /**
   * Makes room for one more connection: closes the one that has waited longest since its last
   * request, unless it is in the middle of one. False when every connection is.
   */
  function makeRoom(conn: number): boolean {
    let idlest: [Socket, { conn: number; last: number }] | undefined;
    for (const [s, c] of sockets) {
      if (c.busy()) continue;
      if (!idlest || c.last < idlest[1].last) idlest = [s, c];
    }
    if (!idlest) return false;
    const [s, c] = idlest;
    limitHit('connection-slot');
    log.info(
      { conn: c.conn, for: conn, max: maxConnections },
      'policy connection closed: longest idle, slot needed',
    );
    sockets.delete(s);
    closeAnswered(s, 'destroy');
    return true;
  }

  function onConnection(socket: Socket): void {
    const conn = ++connectionIds;
    if (sockets.size >= maxConnections && !makeRoom(conn)) {
      limitHit('connections');
      log.warn(
        { conn, max: maxConnections, peer: socket.remoteAddress },
        'policy connection refused: every connection is answering a request',
      );
      socket.on('error', () => {});
      socket.destroy();
      return;
    }
    const parser = new RequestParser(parserOptions);
    let busy = false;
    let closed = false;
    // The client has half-closed: answer what it sent, then close our side.
    let ended = false;
    // Time is up (lifetime): close once the request in hand, if any, is answered.
    let expired = false;
    // Being answered. Bytes of a request not yet whole do not protect a connection: Postfix writes
    // each request at once, a drip does not.
    const entry = { busy: () => busy, conn, last: requests };
    sockets.set(socket, entry);
    socket.setNoDelay(true);
    // Idle is measured from the last whole request, not the last byte: a drip does not reset it.
    const idleTimer = setTimeout(() => {
      if (busy) {
        idleTimer.refresh();
        return;
      }
      log.info({ conn, ms: idleTimeout }, 'policy connection idle: closed');
      closeAnswered(socket, 'destroy');
    }, idleTimeout);
    const lifeTimer = setTimeout(() => {
      log.info({ conn, ms: connectionLifetime }, 'policy connection lifetime reached: closed');
      expired = true;
      if (!busy) closeAnswered(socket, 'destroy');
    }, connectionLifetime);
    idleTimer.unref();
    lifeTimer.unref();
    socket.on('error', (err) => {
      log.debug({ conn, err: err.message }, 'policy connection error');
    });
    socket.on('close', () => {
      closed = true;
      clearTimeout(idleTimer);
      clearTimeout(lifeTimer);
      if (sockets.get(socket)?.conn === conn) sockets.delete(socket);
      unwritten.delete(socket);
    });

    // Requests on one connection are answered in order, one at a time, as Postfix sends them.
    // Bytes that arrive while one is judged pause the socket (`held`), so a client that sends ahead
    // is held back by TCP. Postfix never does: it waits for each answer, and its connection is not
    // paused and resumed a request (two changes of the socket's reading, on the hot path).
    let held = false;
    const pump = async (): Promise<void> => {
      if (busy || !parser.hasRequest) return;
      busy = true;
      try {
        for (let req = parser.take(); req !== undefined && !closed; req = parser.take()) {
          // A whole request: this connection is in use, the last to be closed for room. (Its idle
          // timer is refreshed once answered; while busy the timer only refreshes itself.)
          entry.last = ++requests;
          const action = await answer(req, conn);
          if (closed) return;
          writeSoon(socket, formatAnswer(action));
          idleTimer.refresh();
        }
      } finally {
        busy = false;
        if (!closed) {
          if (expired || ended) {
            closeAnswered(socket, 'end');
          } else if (held) {
            held = false;
            socket.resume();
          }
        }
      }
    };
    socket.on('end', () => {
      ended = true;
      if (!busy) closeAnswered(socket, 'end');
    });

    socket.on('data', (chunk: Buffer) => {
      if (busy && !held) {
        held = true;
        socket.pause();
      }
      try {
        parser.feed(chunk);
      } catch (err) {
        const code = err instanceof ProtocolError ? err.code : 'internal';
        limitHit(code);
        log.warn(
          { conn, err: errText(err), code, peer: socket.remoteAddress },
          'malformed policy request: closing',
        );
        closed = true;
        closeAnswered(socket, 'destroy');
        return;
      }
      void pump();
    });
  }

  const server = createServer({ allowHalfOpen: true }, onConnection);
  await listen(server, options.listen);
  // Logged from here on: a failure to listen is the caller's error to report, once.
  server.on('error', (err) => log.error({ err: err.message }, 'policy server error'));
  const addr = server.address();
  const address =
    'path' in options.listen
      ? { path: options.listen.path }
      : typeof addr === 'object' && addr !== null
        ? { host: addr.address, port: addr.port }
        : { host: options.listen.host, port: options.listen.port };
  log.info({ listen: address }, 'policy server listening');

  return {
    address,
    get connections() {
      return sockets.size;
    },
    async reload(policy) {
      const old = current;
      current = { chain: policy.chain, enrich: policy.enrich, busy: 0 };
      while (old.busy > 0) await new Promise((r) => setTimeout(r, 50).unref());
    },
    close() {
      return new Promise<void>((resolve) => {
        server.close(() => resolve());
        for (const s of sockets.keys()) s.destroy();
      });
    },
  };
}

function errText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

function listenOnce(server: Server, listen: Listen): Promise<void> {
  return new Promise((resolve, reject) => {
    const onError = (err: Error) => {
      server.off('listening', onListening);
      reject(err);
    };
    const onListening = () => {
      server.off('error', onError);
      resolve();
    };
    server.once('error', onError);
    server.once('listening', onListening);
    if ('path' in listen) server.listen(listen.path);
    else server.listen(listen.port, listen.host);
  });
}

/** A UNIX socket left by a dead server is removed; one a live server answers on is not. */
async function listen(server: Server, where: Listen): Promise<void> {
  try {
    await listenOnce(server, where);
  } catch (err) {
    if (!('path' in where) || (err as NodeJS.ErrnoException).code !== 'EADDRINUSE') throw err;
    const alive = await new Promise<boolean>((resolve) => {
      const probe = netConnect(where.path);
      probe.once('connect', () => {
        probe.destroy();
        resolve(true);
      });
      probe.once('error', () => resolve(false));
    });
    if (alive) throw err;
    await unlink(where.path);
    await listenOnce(server, where);
  }
}
