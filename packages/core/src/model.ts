/**
 * The core model: what a check sees (Session), what it says (Verdict), and
 * what it is (Check). Nothing here does I/O; clocks, loggers and stores are
 * passed in.
 */

/** SMTP stages, in the order a conversation reaches them. */
export type Stage = 'connect' | 'helo' | 'mail' | 'rcpt' | 'data';

/** Stages in conversation order; `STAGE_ORDER[stage]` compares two stages. */
export const STAGES: readonly Stage[] = ['connect', 'helo', 'mail', 'rcpt', 'data'];

/** Position of a stage in the conversation (connect = 0). */
export function stageIndex(stage: Stage): number {
  return STAGES.indexOf(stage);
}

/** What reverse DNS said about the client address. */
export interface ReverseDns {
  /** PTR names of the client address, lower case, without the trailing dot. Empty: the address has none. */
  readonly names: readonly string[];
  /**
   * The first PTR name whose A/AAAA records include the client address (forward-confirmed,
   * Postfix's `client_name`), `null` when none is, `undefined` when not checked.
   */
  readonly verified?: string | null;
  /** Set when the lookup failed temporarily: the names are then unknown, not absent. */
  readonly error?: 'temporary';
}

/** What is known so far about one SMTP conversation. */
export interface Session {
  /** The connecting client's IP address (IPv4 dotted quad or IPv6), never a Received header's. */
  readonly clientAddress: string;
  /** The client's TCP port, for the log. */
  readonly clientPort?: number;
  /** Reverse DNS of the client address; `undefined` until looked up. */
  readonly rdns?: ReverseDns;
  /** The HELO/EHLO argument as the client sent it. */
  readonly helo?: string;
  /** MAIL FROM address without angle brackets; `''` is the null sender `<>`. */
  readonly mailFrom?: string;
  /** The RCPT TO address being judged, without angle brackets. */
  readonly rcptTo?: string;
  /** Recipients already accepted in this transaction. */
  readonly recipients?: readonly string[];
  /** The client used STARTTLS. */
  readonly tls?: boolean;
  /** SASL login name when the client authenticated. */
  readonly authUser?: string;
  /** The stage being judged. */
  readonly stage: Stage;
  /**
   * The message's header block as received (unfolded or not), at the `data` stage once the adapter
   * has read it; absent before. Received headers are claims by strangers: checks may score them,
   * never refuse on them (DESIGN principle 3).
   */
  readonly headers?: string;
  /** Free-form facts that adapters found (e.g. `earlyTalker`, `unauthorizedPipelining`). */
  readonly flags?: Readonly<Record<string, boolean | number | string>>;
}

/** An SMTP reply: basic code (RFC 5321), enhanced status code (RFC 3463) and text. */
export interface Reply {
  /** The basic code: 2xx, 4xx (try again later) or 5xx (refused). */
  readonly code: number;
  /** The enhanced status code matching the class of `code`, such as `5.7.1`. */
  readonly enhanced: string;
  /** The text after the codes. */
  readonly text: string;
}

/** The four answers of a check, as Postfix's OK, REJECT, DEFER and DUNNO. */
export type Action = 'accept' | 'reject' | 'defer' | 'next';

/** A finding that did not decide on its own: a score for `weigh()` or a doubt for selective greylisting. */
export interface Finding {
  /** The check that found it. */
  readonly check: string;
  /** What it found, short and stable (e.g. `dynamic`, `no-ptr`, `listed:zen.spamhaus.org`). */
  readonly tag: string;
  /** Points toward spam (negative: toward ham). */
  readonly score?: number;
  /** True when the finding should send the client to the greylist. */
  readonly doubt?: boolean;
}

/** No opinion (Postfix DUNNO), possibly with findings for later links. */
export interface NextVerdict {
  /** No opinion: the next link decides. */
  readonly action: 'next';
  /** Why, for the trace. */
  readonly reason?: string;
  /** What the check noticed, for later links (a `weigh`, the selective greylist). */
  readonly findings?: readonly Finding[];
}

/** A decision that ends the chain (or, for `ifPermit` defers, may end it). */
export interface FinalVerdict {
  /** `accept` ends the chain with a yes, `reject` with a 5xx, `defer` with a 4xx. */
  readonly action: 'accept' | 'reject' | 'defer';
  /** The reply sent to the client. */
  readonly reply: Reply;
  /** Why, for the log: the evidence, not the reply text. */
  readonly reason: string;
  /** Postfix DEFER_IF_PERMIT: a 4xx only if nothing later rejects. Only with `defer`. */
  readonly ifPermit?: boolean;
  /** What the check noticed, kept in the trace. */
  readonly findings?: readonly Finding[];
}

/** What a check answers: no opinion (`next`), or a decision. */
export type Verdict = NextVerdict | FinalVerdict;

/** Milliseconds since the Unix epoch, from a clock that is passed in. */
export interface Clock {
  /** The current time in ms since the epoch. */
  now(): number;
}

/** A structured logger: one object a line. Compatible with pino's method shapes. */
export interface Logger {
  /** Detail for debugging: the fields, and a message. */
  debug(obj: object, msg?: string): void;
  /** A normal event (a decision line). */
  info(obj: object, msg?: string): void;
  /** Something the operator should look at (a store failing open). */
  warn(obj: object, msg?: string): void;
  /** A failure. */
  error(obj: object, msg?: string): void;
  /**
   * Writes one decision line ({@link decisionRecord}'s fields), once a decision: what
   * `info(record, 'decision')` writes, by a faster path when the logger has one (the CLI's writes
   * the same JSON without pino's general serialiser). Optional: {@link logDecision} falls back to
   * `info`.
   */
  decision?(record: object): void;
}

/** What a check may use besides the session. */
export interface CheckContext {
  /** The chain's clock: a check never reads `Date.now()`. */
  readonly clock: Clock;
  /** The chain's logger. */
  readonly log: Logger;
  /** Findings of the links evaluated before this one, in this evaluation. */
  readonly findings: readonly Finding[];
}

/** One named check. Its name is its config key, its trace label and its log label. */
export interface Check {
  /** Its name: the config key, the trace label and the `(name)` in replies. */
  readonly name: string;
  /** The earliest stage at which the check has its input. */
  readonly stage: Stage;
  /**
   * The check reads `session.headers` (a `data`-stage check). An adapter that sees such a link in
   * its chain judges the `data` stage once the header block has arrived, not at the DATA command.
   */
  readonly readsHeaders?: boolean;
  /**
   * The most points this check's findings can carry in one evaluation (`received`: its `maxScore`).
   * For a check that reads headers, the chain refuses a configuration in which these points alone
   * reach a `weigh` threshold (DESIGN principle 3); a header reader without it counts as unbounded.
   */
  readonly maxScore?: number;
  /**
   * Set by `weigh` links: the lowest total that refuses (the defer threshold, else the reject one),
   * the points its own header-reading members can add, and whether it counts earlier findings.
   */
  readonly weighs?: {
    /** The lowest total that refuses. */
    readonly refusesAt: number;
    /** The most points its header-reading members can add. */
    readonly headerPoints: number;
    /** It counts the findings of earlier links too. */
    readonly earlier: boolean;
  };
  /** Judges the session at its stage; must not throw for bad input (a verdict says what is wrong). */
  run(session: Session, ctx: CheckContext): Verdict | Promise<Verdict>;
}

/** The system clock, for production wiring only; tests pass their own. */
export const systemClock: Clock = { now: () => Date.now() };

/** A logger that drops everything. */
export const silentLogger: Logger = {
  debug() {},
  info() {},
  warn() {},
  error() {},
};

/** A clock that moves only when told: for tests and for replaying logged sessions. */
export class ManualClock implements Clock {
  constructor(private ms = 0) {}
  /** The time it was set to, in ms since the epoch. */
  now(): number {
    return this.ms;
  }
  /** Sets the time (ms since the epoch). */
  set(ms: number): void {
    this.ms = ms;
  }
  /** Moves the time forward by `ms`. */
  advance(ms: number): void {
    this.ms += ms;
  }
}
