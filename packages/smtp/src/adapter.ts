import type { Socket } from 'node:net';
import type { Readable } from 'node:stream';
import { PassThrough } from 'node:stream';
import type { Chain, Decision, Finding, Logger, LogTrace, Reply, Session, Stage } from '@mxguard/core';
import {
  currentDeadline,
  DEADLINE_GRACE_MS,
  decisionRecord,
  logTraceOf,
  reply as makeReply,
  requirePositiveIntegers,
  settleBy,
  withinBudget,
  logDecision as writeDecisionLine,
} from '@mxguard/core';
import type { SMTPServer, SMTPServerAddress, SMTPServerDataStream, SMTPServerSession } from 'smtp-server';
import {
  beforeCommand,
  connectionOf,
  dataBytesReceived,
  isBusy,
  isClosing,
  parserOf,
  type SmtpConnectionInternals,
  wrapSend,
} from './internals.js';
import { PipeliningTap } from './pipelining.js';
import { replyError, startsWithEnhanced } from './reply.js';

/** Flags the adapter sets on `Session.flags`, read by core's `pipelining` check. */
export const FLAG_EARLY_TALKER = 'earlyTalker';
/** See {@link FLAG_EARLY_TALKER}. */
export const FLAG_UNAUTHORIZED_PIPELINING = 'unauthorizedPipelining';

/** What the adapter tells `deliver` about an accepted message. */
export interface Delivery {
  /** The session as the chain saw it at DATA (stage `data`, all accepted recipients). */
  readonly session: Session;
  /** smtp-server's session id (also in every log line of the connection as `cid`). */
  readonly cid: string;
  /** The client said EHLO (ESMTP), not HELO. */
  readonly esmtp: boolean;
  /** The TLS protocol version and cipher, when the client used STARTTLS (for the Received header). */
  readonly tls?: {
    /** The TLS version, such as `TLSv1.3`. */
    readonly protocol?: string;
    /** The cipher suite, such as `TLS_AES_256_GCM_SHA384`. */
    readonly cipher?: string;
  };
}

/** Options of {@link smtpServerHooks} and {@link attach}. */
export interface SmtpAdapterOptions {
  /** The chain evaluated at each stage. */
  readonly chain: Chain;
  /** Receives one `{event:'decision', ...}` line per evaluation, and warnings. */
  readonly log: Logger;
  /**
   * Looks things up about the client (PTR, DNS-list prefetch). Started as soon as the connection is
   * accepted and awaited before the first evaluation, so the lookups run while the client is still
   * reading our greeting (DESIGN principle 4). Its result is merged into the Session (`rdns`,
   * `flags`, ...; the adapter's own fields win). A throw, a rejection or a timeout becomes
   * `rdns: { names: [], error: 'temporary' }` and `flags.enrichFailed`: an unknown, never a crash.
   */
  readonly enrich?: (session: Session) => Promise<Partial<Session>>;
  /**
   * How long an unfinished `enrich` is waited for before it counts as a temporary failure: its
   * deadline (its DNS lookups still unanswered then are cut, and those queued never sent).
   * @default 10000
   */
  readonly enrichTimeoutMs?: number;
  /**
   * The time budget of each command's answer (MAIL, RCPT, the verdict after DATA), in ms: the
   * wait for `enrich`, the chain and the downstream recipient check. When it runs out, the DNS
   * lookups of that answer still unfinished count as temporary failures (queued ones are never
   * sent) and the chain answers with what it has, each check under its own rule for a temporary
   * failure (at most a 4xx). An answer still not decided {@link DEADLINE_GRACE_MS} (250 ms) later
   * (a store that hangs) is `451 4.3.0`. Well below smtp-server's `socketTimeout` (60 s) and the
   * 5 minutes RFC 5321 (4.5.3.2) gives a client to wait for the reply to MAIL or RCPT.
   * @default 10000
   */
  readonly budgetMs?: number;
  /**
   * Whether each answer's deadline is carried in the asynchronous context, for the DNS lookups
   * its chain makes (`currentDeadline`; see `BudgetOptions.context` in core). Give `false` when
   * the chain makes none (`mxguard serve --offline`). With an `enrich` the context is carried
   * whatever this says. Every answer keeps its time budget.
   * @default true
   */
  readonly deadlineContext?: boolean;
  /**
   * Evaluate the chain when the client connects (before the greeting), refusing the connection on a
   * reject/defer. Only useful with a chain built with `delayReject: false`; with delay-reject (the
   * default, as Postfix's `smtpd_delay_reject = yes`) connect checks are judged at RCPT anyway.
   * @default false
   */
  readonly evaluateConnect?: boolean;
  /**
   * What to do with a client that talks before our greeting (needs {@link SmtpGuard.install}).
   * - `flag`: hold what it sent until the greeting is out, set `flags.earlyTalker` and let the chain
   *   decide (as postscreen's `greet_action = enforce` lets the client go on and rejects at RCPT).
   * - `refuse`: keep smtp-server's own answer (`421 You talk too soon`, then close), and log it as a
   *   decision of the check `early-talker`.
   * @default 'flag'
   */
  readonly earlyTalkers?: 'flag' | 'refuse';
  /** Bytes held from an early talker before it is disconnected. @default 4096 */
  readonly maxEarlyBytes?: number;
  /**
   * When a link of the chain reads headers (`readsHeaders`, e.g. `received`), the `data` stage is
   * judged once the header block has arrived, with `session.headers` set: at most this many bytes
   * are read for it (a block without its blank line within them is judged as far as it got).
   * @default 65536
   */
  readonly maxHeaderBytes?: number;
  /**
   * Domains we accept mail for. When set, a RCPT to any other domain is refused with
   * `554 5.7.1 Relay access denied` before the chain runs (Postfix `reject_unauth_destination`),
   * unless the client authenticated. An inbound MX relays for no one, loopback included.
   */
  readonly recipientDomains?: readonly string[];
  /**
   * Takes an accepted message's stream (dot-unstuffed bytes, as smtp-server gives them) and stores
   * it; resolves with a queue id for the `250` reply once the message is safe. A rejection with an
   * error that has `responseCode` is sent as is; any other error answers `451 4.3.0`.
   * Default: read and discard (useful only in tests).
   */
  readonly deliver?: (stream: SMTPServerDataStream, delivery: Delivery) => Promise<string | undefined>;
  /**
   * Asked about each recipient the chain let through (accept or no opinion), before the client
   * hears 250: a reply refuses the recipient (e.g. an unknown user at the mail server behind us,
   * see `downstreamRecipientCheck`), `undefined` lets it through. A throw lets it through too (the
   * downstream still decides at DATA).
   */
  readonly verifyRecipient?: (session: Session) => Promise<Reply | undefined>;
  /** Told about each finding on a client (early talker, unauthorized pipelining): feed reputation here. */
  readonly onFlag?: (session: Session, flag: string) => void;
  /**
   * Most recipients of one message, as Postfix's `smtpd_recipient_limit`: past it a RCPT gets
   * `452 4.5.3 Error: too many recipients` without the chain being asked, and the client sends the
   * rest in another transaction (RFC 5321 section 4.5.3.1.10 requires only 100). Applied by
   * {@link SmtpGuard.install} as smtp-server's `maxRecipients` unless the server already sets one.
   * @default 1000
   */
  readonly recipientLimit?: number;
  /**
   * Junk commands (NOOP, RSET, VRFY, EXPN, HELP, ETRN) a client may send before it is
   * disconnected with `421 4.7.0 <host> Error: too many errors`, as Postfix's
   * `smtpd_junk_command_limit`; the count starts again after each accepted message. Postfix turns
   * junk past the limit into errors and disconnects at `smtpd_hard_error_limit` (20); mxguard keeps
   * no error counter and disconnects on the first junk command past the limit.
   * @default 100
   */
  readonly junkCommandLimit?: number;
  /**
   * Longest a connection may stay open, ms, whatever it does: then `421 4.4.2 <host> Error: timeout
   * exceeded` and close (at the next command if we are still working on the last one). Bounds what
   * a client that drips just enough progress can hold a slot for.
   * @default 1800000 (30 minutes)
   */
  readonly sessionLifetimeMs?: number;
  /**
   * Longest time, ms, between two steps of progress: an accepted MAIL or RCPT, message bytes
   * during DATA, an accepted message. Junk commands, repeated HELO/EHLO and bytes that do not make
   * a command are not progress, so a NOOP or one byte a minute (which keep the idle timeout
   * away) do not keep the slot. Counted from the connection on; `421 4.4.2 <host> Error: timeout
   * exceeded` when it runs out. Time we spend answering does not count against the client.
   * @default 300000 (RFC 5321 section 4.5.3.2's 5 minutes per command)
   */
  readonly progressTimeoutMs?: number;
  /**
   * Bytes a second a message must arrive at during DATA, as Postfix's `smtpd_min_data_rate` (500
   * there, with `smtpd_per_request_deadline`): DATA starts with `progressTimeoutMs` of credit, the
   * time the client takes uses it up, and each byte received adds 1/minDataRate of a second, never
   * above `progressTimeoutMs`. When the credit runs out: `421 4.4.2 <host> Error: timeout exceeded`
   * and close. So a message of N bytes may take `progressTimeoutMs` + N/minDataRate seconds, and a
   * drip of a byte every few seconds holds its slot for at most `progressTimeoutMs`, not for the
   * session lifetime. 0: off (any byte within `progressTimeoutMs` is progress).
   * @default 500
   */
  readonly minDataRate?: number;
  /**
   * How much of the trace each decision line carries: `said`, the steps that said something (and
   * `steps`, how many links ran); `full`, every step. See core's `decisionRecord`.
   * @default 'said'
   */
  readonly logTrace?: LogTrace;
}

/** The commands Postfix counts against `smtpd_junk_command_limit`, plus HELP and EXPN. */
const JUNK_COMMANDS = new Set(['NOOP', 'RSET', 'VRFY', 'EXPN', 'HELP', 'ETRN']);

/** smtp-server hooks with the chain wired in, plus the connection instrumentation. */
export interface SmtpGuard {
  /** smtp-server's `onConnect`: judges the connect stage (the client's address, its PTR). */
  onConnect(session: SMTPServerSession, callback: (err?: Error | null) => void): void;
  /** smtp-server's `onMailFrom`: judges the sender (the HELO stage runs here too). */
  onMailFrom(
    address: SMTPServerAddress,
    session: SMTPServerSession,
    callback: (err?: Error | null) => void,
  ): void;
  /** smtp-server's `onRcptTo`: judges each recipient (and, with delay-reject, the earlier stages). */
  onRcptTo(
    address: SMTPServerAddress,
    session: SMTPServerSession,
    callback: (err?: Error | null) => void,
  ): void;
  /** smtp-server's `onData`: judges the message at the end of DATA, then hands it to `deliver`. */
  onData(
    stream: SMTPServerDataStream,
    session: SMTPServerSession,
    callback: (err?: Error | null, message?: string) => void,
  ): void;
  /** smtp-server's `onClose`: forgets the session's state and stops its timers. */
  onClose(session: SMTPServerSession): void;
  /**
   * Wraps `server.connect` so each new connection (1) starts `enrich` at once, (2) gets a `send`
   * that keeps our enhanced status code instead of smtp-server's guess, (3) is watched for early
   * talking and for unauthorized pipelining. Reaches into smtp-server only through internals.ts,
   * which is tested against the version the lockfile pins.
   */
  install(server: SMTPServer): void;
  /** Connections currently tracked (bounded by the open connections: entries go on close). */
  readonly size: number;
}

interface ConnState {
  readonly cid: string;
  enrichment: Promise<Partial<Session>> | undefined;
  readonly flags: Record<string, boolean | number | string>;
  greeted: boolean;
  tap: PipeliningTap | undefined;
  connectEvaluated: boolean;
  /** Scored findings of the last accepted RCPT of the transaction, for a `data`-stage weigh. */
  rcptFindings: readonly Finding[];
  /**
   * The accepted recipients of the transaction, kept in step with smtp-server's envelope one entry
   * at a time, so that a RCPT costs the same whether it is the 1st or the 1,000th.
   */
  recipients: string[];
  /** The envelope list `recipients` mirrors (smtp-server replaces it on RSET, HELO, MAIL after DATA). */
  recipientsOf: readonly unknown[] | undefined;
  /** Junk commands since the connection began or the last accepted message. */
  junk: number;
  /** Refreshed on each step of progress; fires after `progressTimeoutMs` without one. */
  progressTimer: NodeJS.Timeout | undefined;
  lifetimeTimer: NodeJS.Timeout | undefined;
  /** Message bytes received when the progress rule last looked (DATA). */
  dataBytes: number;
  /** The DATA rate rule (see `minDataRate`): its timer, credit (ms), bytes and time last counted. */
  dataTimer: NodeJS.Timeout | undefined;
  dataCredit: number;
  dataSeen: number;
  dataAt: number;
  /** Starts the DATA rate rule for the message now begun (set once the connection is watched). */
  dataStarted: (() => void) | undefined;
  /** Why the session must end, once a limit has run out while we were still answering. */
  expired: string | undefined;
}

/** The default time budget of a command's answer, ms. See {@link SmtpAdapterOptions.budgetMs}. */
export const DEFAULT_BUDGET_MS = 10_000;

/** The answer when a command was not decided within its budget and grace: temporary, never 5xx. */
const LATE_REPLY = makeReply(451, '4.3.0', 'Temporary local problem, try again later');

const ENRICH_FAILED: Partial<Session> = {
  rdns: { names: [], error: 'temporary' },
  flags: { enrichFailed: true },
};

/** Lower-cased domain of an address, without a trailing dot; '' when there is none. */
function domainOf(address: string): string {
  const at = address.lastIndexOf('@');
  return at < 0
    ? ''
    : address
        .slice(at + 1)
        .toLowerCase()
        .replace(/\.$/, '');
}

function authUserOf(user: unknown): string | undefined {
  if (typeof user === 'string' && user) return user;
  if (user && typeof user === 'object' && 'username' in user) {
    const u = (user as { username?: unknown }).username;
    if (typeof u === 'string' && u) return u;
  }
  return undefined;
}

/**
 * Builds smtp-server hooks that evaluate `options.chain` at connect (optional), MAIL, RCPT and DATA,
 * and answer with the verdict's own code, enhanced code and text. See docs/adapters/smtp-server.md.
 */
export function smtpServerHooks(options: SmtpAdapterOptions): SmtpGuard {
  const { chain, log } = options;
  const enrichTimeoutMs = options.enrichTimeoutMs ?? 10_000;
  const budgetMs = options.budgetMs ?? DEFAULT_BUDGET_MS;
  // The deadline in the async context only where a lookup may read it (an enrich always may).
  const context = (options.deadlineContext ?? true) || options.enrich !== undefined;
  for (const [k, v] of Object.entries({ enrichTimeoutMs, budgetMs })) {
    if (!Number.isFinite(v) || v <= 0)
      throw new TypeError(`${k} must be a number of milliseconds > 0, got ${v}`);
  }
  const earlyMode = options.earlyTalkers ?? 'flag';
  const logRecord = { trace: logTraceOf(options.logTrace, 'smtpServerHooks') };
  const maxEarlyBytes = options.maxEarlyBytes ?? 4096;
  const recipientDomains = options.recipientDomains
    ? new Set(options.recipientDomains.map((d) => d.toLowerCase().replace(/\.$/, '')))
    : undefined;
  // One entry per open connection, removed in onClose: bounded by smtp-server's maxClients.
  const states = new Map<string, ConnState>();
  const linkStages = new Set<Stage>(chain.links.map((l) => l.check.stage));
  const readsHeaders = chain.links.some((l) => l.check.readsHeaders === true);
  const maxHeaderBytes = options.maxHeaderBytes ?? 64 * 1024;
  const recipientLimit = options.recipientLimit ?? 1000;
  const junkCommandLimit = options.junkCommandLimit ?? 100;
  const sessionLifetimeMs = options.sessionLifetimeMs ?? 1_800_000;
  const progressTimeoutMs = options.progressTimeoutMs ?? 300_000;
  const minDataRate = options.minDataRate ?? 500;
  if (!Number.isInteger(minDataRate) || minDataRate < 0)
    throw new TypeError(`minDataRate must be a whole number >= 0, got ${minDataRate}`);
  requirePositiveIntegers({ recipientLimit, junkCommandLimit, sessionLifetimeMs, progressTimeoutMs });

  /** A step of progress (see `progressTimeoutMs`): the client gets another full period. */
  function progressed(state: ConnState): void {
    state.progressTimer?.refresh();
  }

  /**
   * The accepted recipients so far, as a list the Session can share: extended by the entries
   * smtp-server added since the last call, rebuilt only when smtp-server started a new list. Valid
   * until the next command of the connection (the chain reads it within one).
   */
  function recipientsOf(state: ConnState, list: readonly { address: string }[] | undefined): string[] {
    const env = list ?? [];
    if (state.recipientsOf !== env || state.recipients.length > env.length) {
      state.recipientsOf = env;
      state.recipients = [];
    }
    // A repeated address replaces its entry in place (smtp-server), the count does not change.
    for (let i = state.recipients.length; i < env.length; i++) state.recipients.push(env[i]?.address ?? '');
    return state.recipients;
  }

  function stateOf(cid: string): ConnState {
    let s = states.get(cid);
    if (!s) {
      s = {
        cid,
        enrichment: undefined,
        flags: {},
        greeted: false,
        tap: undefined,
        connectEvaluated: false,
        rcptFindings: [],
        recipients: [],
        recipientsOf: undefined,
        junk: 0,
        dataBytes: 0,
        dataTimer: undefined,
        dataCredit: 0,
        dataSeen: 0,
        dataAt: 0,
        dataStarted: undefined,
        progressTimer: undefined,
        lifetimeTimer: undefined,
        expired: undefined,
      };
      states.set(cid, s);
    }
    return s;
  }

  function flag(state: ConnState, base: Session, name: string, value: boolean | number = true): void {
    const first = state.flags[name] === undefined;
    state.flags[name] = value;
    if (!first) return;
    log.info({ event: 'finding', flag: name, client: base.clientAddress, cid: state.cid });
    try {
      options.onFlag?.(base, name);
    } catch (err) {
      log.error({ event: 'onFlag-failed', err: String(err) });
    }
  }

  function startEnrich(state: ConnState, base: Session): void {
    if (state.enrichment || !options.enrich) return;
    const enrich = options.enrich;
    const failed = (why: string): Partial<Session> => {
      log.warn({ event: 'enrich-failed', client: base.clientAddress, cid: state.cid, err: why });
      return ENRICH_FAILED;
    };
    // Its own deadline: lookups it leaves unfinished are cut, not left holding resolver slots.
    state.enrichment = withinBudget(
      enrichTimeoutMs,
      () => enrich(base),
      () => undefined,
      {
        graceMs: 0,
      },
    ).then(
      (r) => {
        if (r.late) return failed(`no answer within ${enrichTimeoutMs} ms`);
        return r.value && typeof r.value === 'object' ? r.value : {};
      },
      (err: unknown) => failed(err instanceof Error ? err.message : String(err)),
    );
  }

  function baseSession(s: SMTPServerSession): Session {
    return { clientAddress: stripMapped(s.remoteAddress), clientPort: s.remotePort, stage: 'connect' };
  }

  async function sessionAt(
    state: ConnState,
    s: SMTPServerSession,
    stage: Stage,
    rcptTo?: string,
  ): Promise<Session> {
    const base = baseSession(s);
    startEnrich(state, base);
    // The answer's deadline bounds the wait too (enrich may have been started by another command).
    const extra = state.enrichment
      ? await settleBy(state.enrichment, currentDeadline(), () => ENRICH_FAILED)
      : {};
    const env = s.envelope;
    const mailFrom = env?.mailFrom ? env.mailFrom.address : undefined;
    const helo = s.hostNameAppearsAs || undefined;
    const authUser = authUserOf(s.user);
    // Object.assign, not `{ ...extra, clientAddress, ... }`: Node 20's V8 gives every object spread
    // then given keys of its own a new hidden class, and each key added after it another, about
    // 10 µs a command here (docs/DECISIONS.md, "Object spread on the hot path").
    const session: Record<string, unknown> = Object.assign({}, extra, {
      clientAddress: base.clientAddress,
      clientPort: base.clientPort,
      stage,
      tls: !!s.secure,
      recipients:
        stage === 'data' ? (env?.rcptTo ?? []).map((r) => r.address) : recipientsOf(state, env?.rcptTo),
      flags: Object.assign({}, extra.flags, state.flags),
    });
    if (helo !== undefined) session.helo = helo;
    if (stage === 'mail' || stage === 'rcpt' || stage === 'data') {
      if (stage === 'mail') session.mailFrom = pendingFrom.get(state.cid) ?? '';
      else if (mailFrom !== undefined) session.mailFrom = mailFrom;
    }
    if (rcptTo !== undefined) session.rcptTo = rcptTo;
    if (authUser !== undefined) session.authUser = authUser;
    return session as unknown as Session;
  }

  // MAIL FROM being judged (smtp-server sets envelope.mailFrom only after onMailFrom succeeded).
  const pendingFrom = new Map<string, string>();

  function logDecision(session: Session, d: Decision, cid: string): void {
    const record = decisionRecord(session, d, cid, logRecord);
    record.cid = cid;
    writeDecisionLine(log, record);
  }

  async function evaluate(
    session: Session,
    cid: string,
    alwaysLog = true,
    carried: readonly Finding[] = [],
  ): Promise<Decision> {
    let d: Decision;
    try {
      d = await chain.evaluate(session, carried);
    } catch (err) {
      // The chain itself failed (not a check: those are caught inside). Temporary, never a 5xx.
      const message = err instanceof Error ? err.message : String(err);
      d = {
        action: 'defer',
        reply: makeReply(451, '4.3.5', 'Server configuration problem'),
        check: chain.name,
        reason: `chain failed: ${message}`,
        trace: [],
        findings: [],
      };
    }
    if (alwaysLog || d.trace.length > 0 || d.action !== 'next') logDecision(session, d, cid);
    return d;
  }

  /** The error for smtp-server's callback, or null to let it go on. */
  function answer(d: Decision): Error | null {
    if ((d.action === 'reject' || d.action === 'defer') && d.reply) return replyError(d.reply);
    return null;
  }

  /**
   * Runs a command's `work` within the answer's time budget and hands its outcome to smtp-server's
   * callback: the error to answer with, or null to let the command go on.
   */
  function settle(
    work: () => Promise<Error | null>,
    callback: (err?: Error | null) => void,
    what: string,
    cid: string,
  ): void {
    decideInTime(work, () => replyError(LATE_REPLY), what, cid).then(
      // Answered from the next turn of the event loop: a chain that needs no I/O settles in
      // microtasks, and smtp-server would then run a whole read of pipelined commands (some 2,000
      // RCPTs in 64 KiB) before it read from any other connection. One command per turn is fair.
      (err) => setImmediate(callback, err),
      (err: unknown) => {
        log.error({
          event: 'adapter-failed',
          hook: what,
          err: err instanceof Error ? err.message : String(err),
        });
        callback(replyError(makeReply(451, '4.3.0', 'Temporary local problem, try again later')));
      },
    );
  }

  /** `work` within the budget; `late()` past it (and its grace), logged loudly either way. */
  async function decideInTime<T>(
    work: () => Promise<T>,
    late: () => T,
    what: string,
    cid: string,
  ): Promise<T> {
    const r = await withinBudget(budgetMs, work, late, { context });
    if (r.late) {
      log.error({
        event: 'decision-late',
        hook: what,
        cid,
        ms: budgetMs + DEADLINE_GRACE_MS,
        reply: `${LATE_REPLY.code} ${LATE_REPLY.enhanced}`,
      });
    } else if (r.expired) {
      log.warn({ event: 'budget-exhausted', hook: what, cid, ms: budgetMs });
    }
    return r.value;
  }

  /** The downstream's word on a recipient the chain let through; logged when it refuses. */
  async function verify(session: Session, cid: string): Promise<Reply | undefined> {
    if (!options.verifyRecipient) return undefined;
    let r: Reply | undefined;
    try {
      r = await options.verifyRecipient(session);
    } catch (err) {
      log.warn({ event: 'verify-recipient-failed', err: err instanceof Error ? err.message : String(err) });
      return undefined;
    }
    if (r) {
      logDecision(
        session,
        {
          action: 'reject',
          reply: r,
          check: 'downstream-recipient',
          reason: 'the mail server behind us does not know the recipient',
          trace: [],
          findings: [],
        },
        cid,
      );
    }
    return r;
  }

  /** Stages before `stage` whose links would otherwise never run (smtp-server has no HELO hook). */
  async function earlier(state: ConnState, s: SMTPServerSession): Promise<Error | null> {
    const stages: Stage[] = [];
    if (!state.connectEvaluated && linkStages.has('connect')) stages.push('connect');
    if (linkStages.has('helo')) stages.push('helo');
    state.connectEvaluated = true;
    for (const st of stages) {
      const d = await evaluate(await sessionAt(state, s, st), state.cid, false);
      const err = answer(d);
      if (err) return err;
    }
    return null;
  }

  /**
   * The limits on one connection that smtp-server does not have: junk commands, lifetime and
   * progress, through internals.ts (beforeCommand, isBusy, isClosing, dataBytesReceived).
   */
  function watchLimits(state: ConnState, connection: SmtpConnectionInternals, base: Session): void {
    const end = (limit: string, reply: string): void => {
      log.info({ event: 'session-limit', limit, client: base.clientAddress, cid: state.cid });
      connection.send(421, reply);
    };
    const timeoutReply = () => `4.4.2 ${connection.name} Error: timeout exceeded`;
    const expire = (limit: string): void => {
      if (isClosing(connection)) return;
      if (isBusy(connection)) {
        // We owe the client an answer: it goes out, and the next command is refused.
        state.expired ??= limit;
        return;
      }
      end(limit, timeoutReply());
    };
    state.lifetimeTimer = setTimeout(() => expire('session-lifetime'), sessionLifetimeMs);
    state.lifetimeTimer.unref();
    state.progressTimer = setTimeout(() => {
      // Our own slowness is not the client's: wait for our answer, then give it a full period.
      const received = dataBytesReceived(connection);
      if (isBusy(connection)) state.progressTimer?.refresh();
      else if (received !== undefined && received > state.dataBytes) {
        // Message bytes arrived in this period: progress.
        state.dataBytes = received;
        state.progressTimer?.refresh();
      } else expire('progress');
    }, progressTimeoutMs);
    state.progressTimer.unref();

    if (minDataRate > 0) {
      // Postfix's per-request deadline with smtpd_min_data_rate, counted at each look rather than
      // at each read: credit = min(progressTimeoutMs, credit - elapsed + bytes / rate).
      const look = (): void => {
        state.dataTimer = undefined;
        const received = dataBytesReceived(connection);
        if (received === undefined || isClosing(connection)) return; // the message is in, or gone
        const now = performance.now();
        const credit = Math.min(
          progressTimeoutMs,
          state.dataCredit - (now - state.dataAt) + ((received - state.dataSeen) * 1000) / minDataRate,
        );
        state.dataCredit = credit;
        state.dataSeen = received;
        state.dataAt = now;
        if (credit <= 0) {
          expire('data-rate');
          return;
        }
        state.dataTimer = setTimeout(look, Math.max(50, credit));
        state.dataTimer.unref();
      };
      state.dataStarted = () => {
        clearTimeout(state.dataTimer);
        state.dataCredit = progressTimeoutMs;
        state.dataSeen = 0;
        state.dataAt = performance.now();
        state.dataTimer = setTimeout(look, progressTimeoutMs);
        state.dataTimer.unref();
      };
    }

    beforeCommand(connection, (command) => {
      if (state.expired) {
        end(state.expired, timeoutReply());
        return true;
      }
      const verb = command.split(' ', 1)[0]?.toUpperCase() ?? '';
      if (JUNK_COMMANDS.has(verb) && ++state.junk > junkCommandLimit) {
        end('junk-commands', `4.7.0 ${connection.name} Error: too many errors`);
        return true;
      }
      return false;
    });
  }

  const guard: SmtpGuard = {
    get size() {
      return states.size;
    },

    onConnect(s, callback) {
      const state = stateOf(s.id);
      startEnrich(state, baseSession(s));
      if (!options.evaluateConnect) return callback();
      state.connectEvaluated = true;
      settle(
        async () => answer(await evaluate(await sessionAt(state, s, 'connect'), state.cid)),
        callback,
        'connect',
        state.cid,
      );
    },

    onMailFrom(address, s, callback) {
      const state = stateOf(s.id);
      state.rcptFindings = [];
      pendingFrom.set(state.cid, address.address ?? '');
      settle(
        async () => {
          try {
            const early = await earlier(state, s);
            if (early) return early;
            const err = answer(await evaluate(await sessionAt(state, s, 'mail'), state.cid));
            if (!err) progressed(state);
            return err;
          } finally {
            pendingFrom.delete(state.cid);
          }
        },
        callback,
        'mail',
        state.cid,
      );
    },

    onRcptTo(address, s, callback) {
      const state = stateOf(s.id);
      const rcpt = address.address;
      if (recipientDomains && !authUserOf(s.user) && !recipientDomains.has(domainOf(rcpt))) {
        // Postfix reject_unauth_destination: 554 5.7.1 <rcpt>: Relay access denied.
        const r = makeReply(554, '5.7.1', `<${rcpt}>: Relay access denied`);
        settle(
          () =>
            sessionAt(state, s, 'rcpt', rcpt).then((session) => {
              logDecision(
                session,
                {
                  action: 'reject',
                  reply: r,
                  check: 'relay-access',
                  reason: 'recipient domain is not ours',
                  trace: [],
                  findings: [],
                },
                state.cid,
              );
              return replyError(r);
            }),
          callback,
          'rcpt',
          state.cid,
        );
        return;
      }
      settle(
        async () => {
          const session = await sessionAt(state, s, 'rcpt', rcpt);
          const d = await evaluate(session, state.cid);
          if (d.action !== 'accept' && d.action !== 'next') return answer(d);
          const refused = await verify(session, state.cid);
          if (refused) return replyError(refused);
          state.rcptFindings = d.findings.filter((f) => f.score);
          progressed(state);
          return null;
        },
        callback,
        'rcpt',
        state.cid,
      );
    },

    onData(stream, s, callback) {
      const state = stateOf(s.id);
      // A message that ends in a 250 starts the junk count again.
      state.dataBytes = 0;
      state.dataStarted?.();
      const accepted = (message: string): string => {
        state.junk = 0;
        progressed(state);
        return message;
      };
      const work = async (): Promise<string> => {
        let session = await sessionAt(state, s, 'data');
        let body: SMTPServerDataStream = stream;
        if (readsHeaders) {
          // smtp-server answers the DATA command with 354 before this hook runs, and our answer goes
          // out after the final dot either way: judging after the header block costs the client
          // nothing and lets header-reading links see `session.headers`.
          const head = await readHead(stream, maxHeaderBytes);
          session = Object.assign({}, session, { headers: headerBlock(head, maxHeaderBytes) });
          body = replay(stream, head);
        }
        // The budget covers the verdict, not the client's sending nor the delivery after it.
        const judged = session;
        const err = await decideInTime(
          async () => answer(await evaluate(judged, state.cid, true, state.rcptFindings)),
          () => replyError(LATE_REPLY),
          'data',
          state.cid,
        );
        if (err) {
          await drain(body);
          throw err;
        }
        if (!options.deliver) {
          await drain(body);
          if (stream.sizeExceeded)
            throw replyError(makeReply(552, '5.3.4', 'Message size exceeds fixed limit'));
          return accepted('2.0.0 Ok');
        }
        const cipher = (s as { tlsOptions?: { name?: string; version?: string } | false }).tlsOptions;
        const id = await options.deliver(body, {
          session,
          cid: state.cid,
          esmtp: s.openingCommand !== 'HELO',
          ...(s.secure && cipher
            ? {
                tls: Object.assign(
                  {},
                  cipher.version ? { protocol: cipher.version } : {},
                  cipher.name ? { cipher: cipher.name } : {},
                ),
              }
            : {}),
        });
        return accepted(id ? `2.0.0 Ok: queued as ${id}` : '2.0.0 Ok');
      };
      work().then(
        (message) => callback(null, message),
        (err: unknown) => {
          if (err instanceof Error && typeof (err as { responseCode?: unknown }).responseCode === 'number') {
            callback(err);
            return;
          }
          log.error({
            event: 'deliver-failed',
            cid: state.cid,
            err: err instanceof Error ? err.message : String(err),
          });
          callback(replyError(makeReply(451, '4.3.0', 'Temporary local problem, try again later')));
        },
      );
    },

    onClose(s) {
      const state = states.get(s.id);
      clearTimeout(state?.progressTimer);
      clearTimeout(state?.lifetimeTimer);
      clearTimeout(state?.dataTimer);
      states.delete(s.id);
      pendingFrom.delete(s.id);
    },

    install(server) {
      const hidePipelining = !!server.options.hidePIPELINING;
      const serverOptions = server.options as { maxRecipients?: number };
      if (!serverOptions.maxRecipients) serverOptions.maxRecipients = recipientLimit;
      const connect = server.connect.bind(server);
      server.connect = (socket, socketOptions) => {
        connect(socket, socketOptions);
        const connection = connectionOf(server, socket);
        // Refused at once (maxClients) or closed: nothing to watch.
        if (!connection) return;
        const state = stateOf(connection.id);
        const base: Session = {
          clientAddress: stripMapped(connection.remoteAddress),
          clientPort: connection.remotePort,
          stage: 'connect',
        };
        startEnrich(state, base);

        const raw = socket as Socket;
        let held: Buffer[] | undefined;
        let heldBytes = 0;
        const parser = parserOf(connection);
        const onEarly = (chunk: Buffer) => {
          if (state.greeted || !held) return;
          flag(state, base, FLAG_EARLY_TALKER);
          held.push(chunk);
          heldBytes += chunk.length;
          if (heldBytes > maxEarlyBytes) {
            log.info({
              event: 'early-talker-dropped',
              client: base.clientAddress,
              cid: state.cid,
              bytes: heldBytes,
            });
            raw.destroy();
          }
        };
        const release = (deliverHeld: boolean) => {
          if (!held) return;
          const chunks = held;
          held = undefined;
          raw.removeListener('data', onEarly);
          if (!deliverHeld || !parser || parserOf(connection) !== parser || raw.destroyed) return;
          for (const c of chunks) parser.write(c);
          raw.pipe(parser);
        };
        if (earlyMode === 'flag' && parser) {
          // Hold what the client sends before the greeting instead of letting smtp-server answer
          // "421 You talk too soon"; it is handed to the parser, in order, right after the greeting.
          held = [];
          raw.unpipe(parser);
          raw.on('data', onEarly);
          raw.resume();
          raw.once('close', () => release(false));
        }

        const tap = new PipeliningTap({ offered: !hidePipelining });
        state.tap = tap;
        // First in line, so the flag is set before the parser dispatches the commands of this read.
        raw.prependListener('data', (chunk: Buffer) => {
          if (!state.greeted) return; // early talking is its own finding
          if (tap?.feed(chunk)) {
            flag(state, base, FLAG_UNAUTHORIZED_PIPELINING);
          }
        });

        watchLimits(state, connection, base);

        wrapSend(connection, (send) => (code, data, context) => {
          const wasGreeted = state.greeted;
          if (!wasGreeted && code === 220) state.greeted = true;
          if (!wasGreeted && code === 421 && typeof data === 'string' && /talk too soon/i.test(data)) {
            flag(state, base, FLAG_EARLY_TALKER);
            logDecision(
              base,
              {
                action: 'defer',
                reply: makeReply(421, '4.7.0', data),
                check: 'early-talker',
                reason: 'client sent commands before the greeting',
                trace: [],
                findings: [],
              },
              state.cid,
            );
          }
          tap?.replied(code);
          // Our replies begin with their enhanced code: tell smtp-server not to add its own.
          send(code, data, startsWithEnhanced(code, data) ? false : context);
          if (!wasGreeted) release(code === 220);
        });
      };
    },
  };
  return guard;
}

/**
 * Wires the chain into an existing SMTPServer: sets its onConnect, onMailFrom, onRcptTo, onData and
 * onClose, and instruments its connections (see {@link SmtpGuard.install}). onAuth stays yours.
 * Create the server with `disableReverseLookup: true` and do PTR lookups in `enrich` instead.
 */
export function attach(server: SMTPServer, options: SmtpAdapterOptions): SmtpGuard {
  const guard = smtpServerHooks(options);
  server.onConnect = guard.onConnect;
  server.onMailFrom = guard.onMailFrom;
  server.onRcptTo = guard.onRcptTo;
  server.onData = guard.onData;
  server.onClose = guard.onClose;
  guard.install(server);
  return guard;
}

/** The address without the `::ffff:` of an IPv4-mapped IPv6 address (dual-stack listeners report those). */
export function stripMapped(address: string | undefined): string {
  const a = (address ?? '').trim();
  return /^::ffff:\d+\.\d+\.\d+\.\d+$/i.test(a) ? a.slice(7) : a;
}

/** Reads a stream to its end, discarding it; resolves on end or error. */
/**
 * Reads from `stream` until the end of the header block (the first empty line), `max` bytes, or
 * the end of the message, then pauses it. Returns what was read.
 */
export function readHead(stream: Readable, max: number): Promise<Buffer> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const done = () => {
      stream.off('data', onData);
      stream.off('end', done);
      stream.off('error', done);
      stream.pause();
      resolve(Buffer.concat(chunks));
    };
    const onData = (chunk: Buffer) => {
      chunks.push(chunk);
      size += chunk.length;
      const all = chunks.length === 1 ? chunk : Buffer.concat(chunks);
      if (size >= max || headerEnd(all) >= 0) done();
    };
    if (stream.readableEnded) return resolve(Buffer.alloc(0));
    stream.on('data', onData);
    stream.once('end', done);
    stream.once('error', done);
  });
}

/** Offset of the empty line that ends a header block, or -1. */
function headerEnd(buf: Buffer): number {
  if (buf.subarray(0, 2).toString('latin1') === '\r\n') return 0;
  if (buf[0] === 0x0a) return 0;
  const crlf = buf.indexOf('\r\n\r\n');
  const lf = buf.indexOf('\n\n');
  if (crlf < 0) return lf < 0 ? -1 : lf + 1;
  return lf < 0 ? crlf + 2 : Math.min(crlf + 2, lf + 1);
}

/** The header block of `head` (up to its empty line, or all of it), at most `max` bytes, as text. */
export function headerBlock(head: Buffer, max = head.length): string {
  const end = headerEnd(head);
  return head.subarray(0, Math.min(end < 0 ? head.length : end, max)).toString('utf8');
}

/** A stream that gives `head` and then the rest of `stream`, with its `sizeExceeded`. */
function replay(stream: SMTPServerDataStream, head: Buffer): SMTPServerDataStream {
  const out = new PassThrough();
  Object.defineProperty(out, 'sizeExceeded', { get: () => stream.sizeExceeded });
  Object.defineProperty(out, 'byteLength', { get: () => stream.byteLength });
  if (head.length > 0) out.write(head);
  if (stream.readableEnded || stream.destroyed || stream.errored) out.end();
  else {
    stream.once('error', (err) => out.destroy(err));
    stream.pipe(out);
  }
  return out as unknown as SMTPServerDataStream;
}

/** Reads a stream to its end, discarding it, so the client's DATA completes; resolves on error too. */
export function drain(stream: Readable): Promise<void> {
  return new Promise((resolve) => {
    if (stream.readableEnded) return resolve();
    stream.on('end', () => resolve());
    stream.on('error', () => resolve());
    stream.resume();
  });
}
