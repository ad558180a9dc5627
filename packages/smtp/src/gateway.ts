import type { AddressInfo, Socket } from 'node:net';
import { createSecureContext } from 'node:tls';
import type { Chain, Clock, Logger, LogTrace, Session } from '@mxguard/core';
import {
  decisionRecord,
  loadOptionalPeer,
  logDecision,
  reply as makeReply,
  systemClock,
} from '@mxguard/core';
import type { SMTPServer } from 'smtp-server';
import type { Delivery, SmtpAdapterOptions, SmtpGuard } from './adapter.js';
import { attach, stripMapped } from './adapter.js';
import { type ConnectionLimitOptions, ConnectionLimits, limitReply } from './anvil.js';
import { receivedHeader } from './received.js';
import { downstreamRecipientCheck, parseRelayTarget, type RelayTarget, relayDelivery } from './relay.js';
import { replyError } from './reply.js';
import { groupDirSync, spoolMessage } from './spool.js';

/** Options of {@link startGateway}. */
export interface GatewayOptions {
  /** The chain evaluated at each stage (e.g. core's `recommended(...)`). */
  readonly chain: Chain;
  /** Where the decision lines and errors go (a pino logger fits). */
  readonly log: Logger;
  /**
   * Folder for accepted messages (must exist, same file system for tmp and final names). Either
   * this or `relay` says where accepted mail goes.
   */
  readonly spoolDir?: string;
  /**
   * The mail server behind us: `smtp://HOST:PORT`, `lmtp://HOST:PORT` or `lmtp:/path/to/socket`.
   * Each accepted message is handed on within the client's session, and the client gets its 250
   * only once that server has the message (a before-queue proxy, see `relayDelivery`).
   */
  readonly relay?: string | RelayTarget;
  /**
   * With an `smtp://` relay, ask it about each recipient at RCPT time, so an unknown user is refused
   * before DATA (see `downstreamRecipientCheck`). @default true for smtp://, false for lmtp
   */
  readonly verifyRecipients?: boolean;
  /** Time to connect to the relay and for each of its replies, ms. @default 30000 */
  readonly relayTimeoutMs?: number;
  /** Address to listen on. @default '127.0.0.1' */
  readonly host?: string;
  /** Port to listen on; 0 picks a free one. @default 2525 */
  readonly port?: number;
  /** Our host name, in the greeting (`220 <hostname> ESMTP`) and in spool envelopes. @default 'mx.example.com' */
  readonly hostname?: string;
  /**
   * Domains we accept mail for; any other recipient gets `554 5.7.1 Relay access denied`.
   * An inbound MX relays for no one, loopback included. @default ['example.com']
   */
  readonly recipientDomains?: readonly string[];
  /** Largest message in bytes; bigger ones get `552 5.3.4`. Advertised as SIZE. @default 26214400 (25 MiB) */
  readonly maxMessageBytes?: number;
  /** @default systemClock */
  readonly clock?: Clock;
  /** Randomness for spool file names. @default crypto.randomBytes */
  readonly random?: (bytes: number) => Uint8Array;
  /** See {@link SmtpAdapterOptions.enrich}. */
  readonly enrich?: (session: Session) => Promise<Partial<Session>>;
  /** @default 10000 */
  readonly enrichTimeoutMs?: number;
  /** See {@link SmtpAdapterOptions.budgetMs}. @default 10000 */
  readonly budgetMs?: number;
  /** See {@link SmtpAdapterOptions.deadlineContext}. @default true */
  readonly deadlineContext?: boolean;
  /** See {@link SmtpAdapterOptions.evaluateConnect}. @default false */
  readonly evaluateConnect?: boolean;
  /** See {@link SmtpAdapterOptions.earlyTalkers}. @default 'flag' */
  readonly earlyTalkers?: 'flag' | 'refuse';
  /** See {@link SmtpAdapterOptions.maxHeaderBytes}. @default 65536 */
  readonly maxHeaderBytes?: number;
  /**
   * Advertise PIPELINING (RFC 2920). When false, a client that pipelines anyway is flagged
   * `unauthorizedPipelining` (at the cost of a round trip per command for honest clients).
   * @default true
   */
  readonly offerPipelining?: boolean;
  /**
   * PEM key and certificate: STARTTLS is offered only when both are given (smtp-server's built-in
   * certificate has a published key and is never used). `minVersion` is the oldest TLS version a
   * client may use. @default minVersion 'TLSv1.2'
   */
  readonly tls?: GatewayTls;
  /** Most simultaneous connections; more get `421`. @default 100 */
  readonly maxClients?: number;
  /** Idle time before `421 Timeout`, ms. @default 300000 (RFC 5321 section 4.5.3.2: 5 minutes) */
  readonly socketTimeoutMs?: number;
  /** Told about each finding on a client (early talker, pipelining, a connection limit hit). */
  readonly onFlag?: SmtpAdapterOptions['onFlag'];
  /**
   * Per-client and total connection limits (Postfix's anvil); `total` defaults to `maxClients`,
   * `exempt` to `ourNetworks`. Past a limit: `421 4.7.0`, logged as a decision of the check
   * `connection-limit` and told to `onFlag` (so the reputation counts it).
   */
  readonly connectionLimits?: ConnectionLimitOptions;
  /** Our own networks: exempt from the per-client connection limits. */
  readonly ourNetworks?: readonly string[];
  /**
   * Most transactions (MAIL commands) in one connection; the next MAIL gets
   * `421 4.7.0 Error: too many messages in one session` and the connection is closed (the client
   * goes on in a new one). 0: no limit. @default 1000
   */
  readonly maxMessagesPerConnection?: number;
  /**
   * Waits this long before the greeting, so that clients that talk first are caught (postscreen's
   * pregreet test with `postscreen_greet_wait`): for every client, or (`doubted` given) only for
   * those it says are doubtful, e.g. without forward-confirmed reverse DNS.
   */
  readonly greetPause?: {
    /** How long the greeting waits, in ms (at most 60000). */
    readonly ms: number;
    /** Which clients wait; without it, every client. */
    readonly doubted?: (session: Session) => Promise<boolean>;
  };
  /** See {@link SmtpAdapterOptions.recipientLimit}. @default 1000 */
  readonly recipientLimit?: number;
  /** See {@link SmtpAdapterOptions.junkCommandLimit}. @default 100 */
  readonly junkCommandLimit?: number;
  /** See {@link SmtpAdapterOptions.sessionLifetimeMs}. @default 1800000 */
  readonly sessionLifetimeMs?: number;
  /** See {@link SmtpAdapterOptions.progressTimeoutMs}. @default 300000 */
  readonly progressTimeoutMs?: number;
  /** See {@link SmtpAdapterOptions.minDataRate}. @default 500 */
  readonly minDataRate?: number;
  /** See {@link SmtpAdapterOptions.logTrace}. @default 'said' */
  readonly logTrace?: LogTrace;
}

/** STARTTLS settings of the gateway. */
export interface GatewayTls {
  /** The private key, PEM. */
  readonly key: string | Buffer;
  /** The certificate chain, PEM. */
  readonly cert: string | Buffer;
  /** The oldest TLS version offered (node:tls `minVersion`). */
  readonly minVersion?: 'TLSv1' | 'TLSv1.1' | 'TLSv1.2' | 'TLSv1.3';
}

/** A running gateway. */
export interface Gateway {
  /** The address it listens on. */
  readonly host: string;
  /** The port it listens on (the real one when 0 was asked). */
  readonly port: number;
  /** The smtp-server that listens (built for the first policy; after a reload, new connections go to the new policy's). */
  readonly server: SMTPServer;
  /** The hooks of the policy in force (counters, tracked connections). */
  readonly guard: SmtpGuard;
  /**
   * Swaps the TLS key and certificate (e.g. renewed files, on SIGHUP): new connections use them,
   * connections already in TLS keep theirs. A bad key or certificate throws and the old ones stay.
   */
  reloadTls(tls: GatewayTls): void;
  /**
   * Hands the connections accepted from now on to a new policy (chain, our domains and networks,
   * lookups, limits); the connections open now finish under the one they started with. Resolves
   * once they have all closed, when the old policy's resources may be freed. Throws at once, with
   * nothing swapped, when the new policy cannot be built.
   */
  reload(policy: GatewayPolicy): Promise<void>;
  /** Open client connections, under every policy still in use. */
  readonly connections: number;
  /** Stops listening and waits for open connections (smtp-server closes them after 30 s). */
  close(): Promise<void>;
}

/** What {@link Gateway.reload} may change: the policy and what goes with it. */
export type GatewayPolicy = Omit<GatewayOptions, 'host' | 'port' | 'tls' | 'spoolDir' | 'relay'>;

/** One smtp-server with the chain, the delivery and the connection defence wired in. */
interface Generation {
  readonly server: SMTPServer;
  readonly guard: SmtpGuard;
  /** Its connection limits (shared with the next generation when their settings are the same). */
  readonly limits: ConnectionLimits;
  /** Closes what the generation opened towards the relay. */
  release(): void;
}

/** The connection limits of a gateway's options, as {@link defend} applies them. */
function connectionLimitsOf(options: GatewayOptions, clock: Clock): ConnectionLimits {
  return new ConnectionLimits(
    {
      total: options.maxClients ?? 100,
      exempt: options.ourNetworks ?? [],
      ...options.connectionLimits,
    },
    clock,
  );
}

/** What decides whether two generations may share their connection limits. */
function limitSettings(options: GatewayOptions): string {
  return JSON.stringify([options.maxClients, options.ourNetworks, options.connectionLimits]);
}

/**
 * Builds one {@link Generation}: every option but where to listen. `limits`: the previous
 * generation's, so that its open connections still count against the per-client and total limits.
 */
function generation(options: GatewayOptions, limits?: ConnectionLimits): Generation {
  const clock = options.clock ?? systemClock;
  const hostname = options.hostname ?? 'mx.example.com';
  const maxMessageBytes = options.maxMessageBytes ?? 25 * 1024 * 1024;
  if ((options.spoolDir === undefined) === (options.relay === undefined))
    throw new TypeError('startGateway: give exactly one of spoolDir and relay');
  const target = typeof options.relay === 'string' ? parseRelayTarget(options.relay) : options.relay;
  const verifyRecipients = options.verifyRecipients ?? target?.protocol === 'smtp';
  if (verifyRecipients && target?.protocol !== 'smtp')
    throw new TypeError('startGateway: verifyRecipients needs an smtp:// relay');
  // One folder fsync for the messages that arrive together (group commit), not one a message.
  const syncDir = options.spoolDir !== undefined ? groupDirSync(options.spoolDir) : undefined;
  // Our Received header, on every message we accept: before the bytes we relay, or in the spool
  // envelope for the delivery agent that reads it.
  const received = ({ session, cid, tls, esmtp }: Delivery) =>
    receivedHeader(session, { hostname, id: cid, time: clock.now(), esmtp, ...(tls ? { tls } : {}) });
  const relay = target
    ? relayDelivery({
        target,
        hostname,
        ...(options.relayTimeoutMs !== undefined ? { timeoutMs: options.relayTimeoutMs } : {}),
        header: received,
      })
    : undefined;
  const deliver: SmtpAdapterOptions['deliver'] =
    relay ??
    (async (stream, delivery) => {
      const { session, cid } = delivery;
      const spooled = await spoolMessage(stream, session, cid, {
        dir: options.spoolDir as string,
        clock,
        hostname,
        received: received(delivery),
        ...(syncDir ? { syncDir } : {}),
        ...(options.random ? { random: options.random } : {}),
      });
      options.log.info({
        event: 'spooled',
        cid,
        id: spooled.id,
        bytes: spooled.bytes,
        rcpt: session.recipients,
      });
      return spooled.id;
    });
  const disabled = ['AUTH'];
  if (!options.tls) disabled.push('STARTTLS');
  const { SMTPServer: Server } = loadOptionalPeer<typeof import('smtp-server')>(
    'smtp-server',
    'startGateway() of @mxguard/smtp',
    import.meta.url,
  );
  const server = new Server({
    name: hostname,
    // We do PTR lookups in `enrich`, with our resolver; smtp-server's own would use the system
    // resolver and wait up to 1.5 s before the greeting.
    disableReverseLookup: true,
    // Advertise ENHANCEDSTATUSCODES and send them on every reply, as Postfix does; the adapter
    // makes sure ours are the ones on policy replies.
    hideENHANCEDSTATUSCODES: false,
    hidePIPELINING: options.offerPipelining === false,
    hideDSN: true,
    disabledCommands: disabled,
    authOptional: true,
    size: maxMessageBytes,
    // Our own total limit answers first, with Postfix's words; this is smtp-server's backstop.
    maxClients: 2 * (options.connectionLimits?.total ?? options.maxClients ?? 100) + 1,
    socketTimeout: options.socketTimeoutMs ?? 300_000,
    logger: false,
    ...(options.tls ? tlsSettings(options.tls) : {}),
  });
  const guard = attach(server, {
    chain: options.chain,
    log: options.log,
    recipientDomains: options.recipientDomains ?? ['example.com'],
    ...(options.enrich ? { enrich: options.enrich } : {}),
    ...(options.enrichTimeoutMs !== undefined ? { enrichTimeoutMs: options.enrichTimeoutMs } : {}),
    ...(options.budgetMs !== undefined ? { budgetMs: options.budgetMs } : {}),
    ...(options.deadlineContext !== undefined ? { deadlineContext: options.deadlineContext } : {}),
    ...(options.evaluateConnect !== undefined ? { evaluateConnect: options.evaluateConnect } : {}),
    ...(options.earlyTalkers ? { earlyTalkers: options.earlyTalkers } : {}),
    ...(options.maxHeaderBytes !== undefined ? { maxHeaderBytes: options.maxHeaderBytes } : {}),
    ...(options.onFlag ? { onFlag: options.onFlag } : {}),
    ...(options.recipientLimit !== undefined ? { recipientLimit: options.recipientLimit } : {}),
    ...(options.junkCommandLimit !== undefined ? { junkCommandLimit: options.junkCommandLimit } : {}),
    ...(options.sessionLifetimeMs !== undefined ? { sessionLifetimeMs: options.sessionLifetimeMs } : {}),
    ...(options.progressTimeoutMs !== undefined ? { progressTimeoutMs: options.progressTimeoutMs } : {}),
    ...(options.minDataRate !== undefined ? { minDataRate: options.minDataRate } : {}),
    ...(options.logTrace !== undefined ? { logTrace: options.logTrace } : {}),
    deliver,
    ...(verifyRecipients && target
      ? {
          verifyRecipient: downstreamRecipientCheck({
            target,
            hostname,
            ...(options.relayTimeoutMs !== undefined ? { timeoutMs: options.relayTimeoutMs } : {}),
          }),
        }
      : {}),
  });
  const anvil = limits ?? connectionLimitsOf(options, clock);
  defend(server, guard, options, hostname, anvil);
  let released = false;
  const release = () => {
    if (released) return;
    released = true;
    relay?.close();
  };
  return { server, guard, limits: anvil, release };
}

/**
 * Starts the example inbound MX: smtp-server with the chain wired in, no AUTH, no relaying, and
 * every accepted message spooled whole and atomically (see docs/gateway.md).
 */
export async function startGateway(options: GatewayOptions): Promise<Gateway> {
  const hostname = options.hostname ?? 'mx.example.com';
  const first = generation(options);
  const { server } = first;
  let current = first;
  let settings = options;
  /** Generations replaced by a reload whose connections are still open. */
  const retired = new Set<Generation>();
  // smtp-server re-emits its socket's errors; a failure to listen is the caller's to report, once.
  let listening = false;
  server.on('error', (err: Error) => {
    if (listening) options.log.error({ event: 'server-error', err: err.message });
  });
  const host = options.host ?? '127.0.0.1';
  await new Promise<void>((resolve, reject) => {
    const onError = (err: Error) => reject(err);
    server.server.once('error', onError);
    server.listen(options.port ?? 2525, host, () => {
      server.server.removeListener('error', onError);
      resolve();
    });
  });
  listening = true;
  const address = server.server.address() as AddressInfo;
  options.log.info({ event: 'listening', host: address.address, port: address.port, hostname });
  // The listener stays; each accepted socket goes to the generation in force (after a reload, an
  // smtp-server that never listens itself, with the new policy's hooks and limits).
  const accept = server.server.listeners('connection') as ((socket: Socket) => void)[];
  server.server.removeAllListeners('connection');
  server.server.on('connection', (socket: Socket) => {
    if (current === first) for (const l of accept) l.call(server.server, socket);
    else current.server.server.emit('connection', socket);
  });
  /** Every generation still in use: the listening one, the one in force, the retired ones. */
  const all = () => new Set([first, current, ...retired]);
  return {
    host: address.address,
    port: address.port,
    server,
    get guard() {
      return current.guard;
    },
    get connections() {
      let n = 0;
      for (const g of all()) n += g.server.connections.size;
      return n;
    },
    reloadTls(tls) {
      if (!options.tls) throw new TypeError('reloadTls: the gateway was started without TLS');
      const next = tlsSettings(tls);
      // Fails here, before anything is swapped, on a key that does not match or a bad PEM.
      createSecureContext(next);
      // spread: once
      settings = { ...settings, tls };
      for (const g of all()) g.server.updateSecureContext(next);
    },
    reload(policy) {
      // spread: once
      const merged = { ...settings, ...policy };
      // The same limits: the same counts, so the connections still open under the old policy count.
      const shared = limitSettings(merged) === limitSettings(settings) ? current.limits : undefined;
      // Throws here, before anything is swapped, when the new policy cannot be built.
      const next = generation(merged, shared);
      next.server.on('error', (err: Error) => policy.log.error({ event: 'server-error', err: err.message }));
      settings = merged;
      const old = current;
      current = next;
      retired.add(old);
      // The connections the old policy accepted finish under it; then the caller may free it.
      return (async () => {
        while (old.server.connections.size > 0) await new Promise((r) => setTimeout(r, 100).unref());
        retired.delete(old);
        if (old !== first) old.server.close();
        old.release();
      })();
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const g of all()) if (g !== first) g.server.close();
        server.close(() => {
          for (const g of all()) g.release();
          resolve();
        });
      }),
  };
}

/**
 * The connection defence around the adapter's hooks: per-client and total connection limits, the
 * messages-per-connection limit and the greeting pause. Composed here, beside the adapter, so the
 * adapter stays about judging commands.
 */
function defend(
  server: SMTPServer,
  guard: SmtpGuard,
  options: GatewayOptions,
  hostname: string,
  limits: ConnectionLimits,
): void {
  const maxMessages = options.maxMessagesPerConnection ?? 1000;
  if (!Number.isInteger(maxMessages) || maxMessages < 0)
    throw new TypeError('startGateway: maxMessagesPerConnection must be a whole number >= 0');
  const pause = options.greetPause;
  if (pause && (!Number.isFinite(pause.ms) || pause.ms < 0 || pause.ms > 60_000))
    throw new TypeError('startGateway: greetPause.ms must be within 0..60000');
  // One entry per open connection, removed on close.
  const messages = new Map<string, number>();
  const refuse = (session: Session, r: ReturnType<typeof makeReply>, reason: string, cid: string) => {
    // The decision line of every adapter; the logger stamps the time.
    // The record gets `cid` added, not spread into a new object with it (slow in Node 20).
    const record = decisionRecord(
      session,
      { action: 'defer', reply: r, check: 'connection-limit', reason, trace: [], findings: [] },
      cid,
    );
    record.cid = cid;
    logDecision(options.log, record);
    try {
      options.onFlag?.(session, 'connectionLimit');
    } catch (err) {
      options.log.error({ event: 'onFlag-failed', err: String(err) });
    }
    return replyError(r);
  };
  const { onConnect, onClose, onMailFrom } = guard;
  server.onConnect = (s, callback) => {
    const address = stripMapped(s.remoteAddress);
    const session: Session = { clientAddress: address, clientPort: s.remotePort, stage: 'connect' };
    const hit = limits.admit(s.id, address);
    if (hit) {
      const why =
        hit === 'total' ? 'all connection slots are taken' : `client over its ${hit} connection limit`;
      return callback(refuse(session, limitReply(hit, hostname, address), why, s.id));
    }
    onConnect(s, (err) => {
      if (err || !pause || pause.ms === 0) return callback(err);
      const wait = () => {
        const t = setTimeout(() => callback(), pause.ms);
        t.unref();
      };
      if (!pause.doubted) return wait();
      pause.doubted(session).then(
        (d) => (d ? wait() : callback()),
        () => wait(),
      );
    });
  };
  server.onClose = (s) => {
    limits.close(s.id);
    messages.delete(s.id);
    onClose(s);
  };
  server.onMailFrom = (address, s, callback) => {
    const n = (messages.get(s.id) ?? 0) + 1;
    messages.set(s.id, n);
    if (maxMessages > 0 && n > maxMessages) {
      const session: Session = { clientAddress: stripMapped(s.remoteAddress), stage: 'mail' };
      return callback(
        refuse(
          session,
          makeReply(421, '4.7.0', `${hostname} Error: too many messages in one session`),
          `more than ${maxMessages} transactions in one connection`,
          s.id,
        ),
      );
    }
    onMailFrom(address, s, callback);
  };
}

function tlsSettings(tls: GatewayTls) {
  return { key: tls.key, cert: tls.cert, minVersion: tls.minVersion ?? ('TLSv1.2' as const) };
}
