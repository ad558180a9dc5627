import type { Check, Clock, Decision, Finding, Logger, ParsedIp, Session, Verdict } from '@mxguard/core';
import { clientIp, defer, next, reject, reply, silentLogger } from '@mxguard/core';
import type { NetworkOptions } from './network.js';
import { networkOf } from './network.js';
import type { ReputationStore } from './types.js';

const HOUR = 3_600_000;

/** Points each event adds to (or, when negative, takes from) a network's score. */
export interface ReputationPoints {
  /**
   * A 5xx from any other check of the chain (a rejected HELO, sender, or an unknown recipient from
   * `address-guessing`). @default 1
   */
  readonly rejection?: number;
  /**
   * A 4xx from another check. Temporary refusals are mostly our own doubts (DNS timeouts,
   * greylisting) and say nothing against the client, so they cost nothing by default.
   * @default 0
   */
  readonly deferral?: number;
  /** A greylisted client that came back too early or from elsewhere (reported by the greylist). @default 1 */
  readonly greylistFailure?: number;
  /** A message accepted at the end of DATA: good behaviour earns the way back. @default -1 */
  readonly accepted?: number;
  /**
   * A protocol violation the adapter saw on the wire (an early talker, or a client that pipelined
   * without being offered PIPELINING, RFC 2920 section 3.1), reported with `recordEvent` when it is
   * seen. It counts even when the client hangs up before any command is judged (what spam engines
   * that talk early often do) and whatever action the `pipelining` check has; when that check also
   * rejects the client, the rejections count on top, as each refused command does.
   * @default 1
   */
  readonly protocolViolation?: number;
}

/** Options of the `reputation` check and of `recordOutcome`. */
export interface ReputationOptions extends NetworkOptions {
  /** Where the records live (memory or Redis); shared with the other reputation checks. */
  readonly store: ReputationStore;
  /** The clock scores and windows are measured by (a `ManualClock` in tests). */
  readonly clock: Clock;
  /** Where store failures are logged. */
  readonly log?: Logger;
  /**
   * The score halves every `halfLifeMs` without news. A day forgives slowly (principle 6): a
   * network that earned a 5xx at 30 points is back under the defer threshold only after about a
   * day and a half of silence, while one bad afternoon of a small sender is forgotten overnight.
   * @default 86_400_000 (24 h)
   */
  readonly halfLifeMs?: number;
  /**
   * From this score on, the client is doubted: the check adds a `doubt` finding so the selective
   * greylist applies to it, with a longer delay hint (`greylistDelay`). Five rejections: more than
   * a sender that mistyped one or two addresses ever collects.
   * @default 5
   */
  readonly doubt?: number;
  /**
   * From this score on, every command of an address that itself offended (see `offender`) gets
   * 450 4.7.1, as Postfix's DEFER_IF_PERMIT: the later checks still run, so a client that keeps
   * offending is still refused by them, each refusal still counts, and the network climbs to
   * `reject`. An address that never offended is only doubted.
   * @default 15
   */
  readonly defer?: number;
  /**
   * From this score on, every command of an address that itself offended gets 554 5.7.1. An
   * address of the network that never offended is only doubted (greylisted): reputation alone
   * never refuses a client for what its neighbours did (principle 6).
   * @default 30
   */
  readonly reject?: number;
  /**
   * An address counts as an offender while its own score (kept beside its network's, with the same
   * points and half-life) is at least this: by default one rejection, or one protocol violation,
   * in the last half-life. Below it the client is at most doubted, whatever its network's score.
   * @default 0.5
   */
  readonly offender?: number;
  /**
   * Greylist delay hint (seconds) carried by the doubt finding; postgrey's default delay is 300 s,
   * a doubted reoffender waits longer.
   * @default 900
   */
  readonly greylistDelay?: number;
  /** Points each event adds to the score; each has a default. */
  readonly points?: ReputationPoints;
  /**
   * Lowest score: how much credit good behaviour can bank. A floor keeps a network with a long
   * clean history from absorbing a sudden burst of abuse unnoticed.
   * @default -10
   */
  readonly minScore?: number;
  /** Highest score: bounds how long forgiveness takes (100 -> under 15 in under 3 half-lives). @default 100 */
  readonly maxScore?: number;
  /**
   * What a store failure does. Reputation only ever adds severity, so failing open (`next`) loses
   * nothing that other checks do not also catch; `defer` (451 4.3.0) is for sites that rely on it.
   * Never a 5xx.
   * @default 'next'
   */
  readonly onStoreError?: 'next' | 'defer';
  /**
   * Checks whose decisions never feed the record: this check itself (otherwise every retry of a
   * deferred client would push it further down) and the greylist (a first greylist deferral is no
   * offence; its failures are reported with `recordEvent`). The address-guessing lockout is a 4xx,
   * which costs `points.deferral` (0 by default).
   * @default ['reputation', 'greylist']
   */
  readonly ignoreChecks?: readonly string[];
}

/** The tag prefix of the doubt finding; the number after it is the greylist delay hint in seconds. */
export const REPUTATION_DELAY_TAG = 'reoffender:delay=';

/** The greylist delay (seconds) the reputation check asks for, if any finding carries the hint. */
export function greylistDelayHint(findings: readonly Finding[]): number | undefined {
  let best: number | undefined;
  for (const f of findings) {
    if (!f.tag.startsWith(REPUTATION_DELAY_TAG)) continue;
    const n = Number(f.tag.slice(REPUTATION_DELAY_TAG.length));
    if (Number.isFinite(n) && n > 0) best = Math.max(best ?? 0, n);
  }
  return best;
}

/** What `recordOutcome` returns when there is nothing to record: one settled promise for all. */
const RECORDED: Promise<void> = Promise.resolve();

/** An address's own record: its network is the address itself. */
const HOST: NetworkOptions = { ipv4Prefix: 32, ipv6Prefix: 128 };

/** Events reported from outside the chain. */
export type ReputationEvent =
  | 'rejection'
  | 'deferral'
  | 'greylist-failure'
  | 'accepted'
  | 'protocol-violation';

/** Resolved settings, shared by the check and the recorders. */
interface Resolved {
  store: ReputationStore;
  clock: Clock;
  log: Logger;
  halfLifeMs: number;
  doubt: number;
  defer: number;
  reject: number;
  offender: number;
  greylistDelay: number;
  points: Required<ReputationPoints>;
  bounds: { min: number; max: number; ttlMs: number };
  onStoreError: 'next' | 'defer';
  ignore: ReadonlySet<string>;
  net: NetworkOptions;
}

function resolve(o: ReputationOptions): Resolved {
  if (!o.store) throw new TypeError('reputation: a store is required');
  if (!o.clock) throw new TypeError('reputation: a clock is required');
  const halfLifeMs = o.halfLifeMs ?? 24 * HOUR;
  const doubt = o.doubt ?? 5;
  const deferAt = o.defer ?? 15;
  const rejectAt = o.reject ?? 30;
  if (!(halfLifeMs > 0)) throw new TypeError('reputation: halfLifeMs must be positive');
  if (!(doubt > 0 && doubt <= deferAt && deferAt <= rejectAt)) {
    throw new TypeError('reputation: thresholds must satisfy 0 < doubt <= defer <= reject');
  }
  const offender = o.offender ?? 0.5;
  if (typeof offender !== 'number' || !(offender > 0) || !Number.isFinite(offender)) {
    throw new TypeError('reputation: offender must be a positive number');
  }
  const min = o.minScore ?? -10;
  const max = o.maxScore ?? 100;
  if (!(min <= 0 && max >= rejectAt))
    throw new TypeError('reputation: need minScore <= 0 and maxScore >= reject');
  const p = o.points ?? {};
  // An idle record is dropped once it decayed to a hundredth of the maximum: ~6.6 half-lives.
  const ttlMs = Math.ceil(halfLifeMs * Math.log2(Math.max(max, -min, 1) * 100));
  return {
    store: o.store,
    clock: o.clock,
    log: o.log ?? silentLogger,
    halfLifeMs,
    doubt,
    defer: deferAt,
    reject: rejectAt,
    offender,
    greylistDelay: o.greylistDelay ?? 900,
    points: {
      rejection: p.rejection ?? 1,
      deferral: p.deferral ?? 0,
      greylistFailure: p.greylistFailure ?? 1,
      accepted: p.accepted ?? -1,
      protocolViolation: p.protocolViolation ?? 1,
    },
    bounds: { min, max, ttlMs },
    onStoreError: o.onStoreError ?? 'next',
    ignore: new Set(o.ignoreChecks ?? ['reputation', 'greylist']),
    net: { ipv4Prefix: o.ipv4Prefix ?? 24, ipv6Prefix: o.ipv6Prefix ?? 64 },
  };
}

/** A reputation: the check that consults it and the functions that feed it, sharing one config. */
export interface Reputation {
  /** The `reputation` check: put it first in the chain. */
  readonly check: Check;
  /**
   * Feeds a chain decision back into the record of the client's network. Adapters call it after
   * every decision: a reject adds `points.rejection`, a defer `points.deferral`, and an accept or
   * no-objection at the DATA stage (a delivered message) `points.accepted`. Never throws: a store
   * failure is logged.
   */
  recordOutcome(session: Session, decision: Decision): Promise<void>;
  /**
   * Records an event seen outside the chain (the greylist's failed retry, an adapter's finding such
   * as an early talker). Never throws.
   */
  recordEvent(clientAddress: string, event: ReputationEvent): Promise<void>;
  /** The current score of the client's network (0 when unknown or the store fails). */
  score(clientAddress: string): Promise<number>;
}

/**
 * Reoffender escalation (principle 6: hit harder on reoffenders, forgive slowly). Each network's
 * score, and each address's own, rises with rejections and falls with accepted mail, and decays
 * with a half-life; the check escalates by the network's thresholds: doubt (longer greylisting),
 * then 450 4.7.1 (if permit), then 554 5.7.1. The 450 and the 554 go only to an address that
 * itself offended; its never-offending neighbours are doubted, never refused.
 */
export function createReputation(options: ReputationOptions): Reputation {
  const r = resolve(options);
  const tooMany = 'Too many errors from your network; try later';
  const deferReply = reply(450, '4.7.1', tooMany);
  const rejectReply = reply(554, '5.7.1', 'Too many errors from your network');
  const failReply = reply(451, '4.3.0', 'Temporary reputation lookup failure');

  /** The keys of a client: its network's record and its own (one key when the prefix is a host). */
  function keysOf(client: string | ParsedIp): { net: string; addr: string } | undefined {
    const net = networkOf(client, r.net);
    if (!net) return undefined;
    const addr = networkOf(client, HOST) ?? net;
    return { net, addr };
  }

  async function add(clientAddress: string, delta: number, why: string): Promise<void> {
    if (delta === 0) return;
    const keys = keysOf(clientAddress);
    if (!keys) return;
    const now = r.clock.now();
    try {
      const [s] = await Promise.all([
        r.store.addScore(keys.net, delta, now, r.halfLifeMs, r.bounds),
        keys.addr === keys.net ? undefined : r.store.addScore(keys.addr, delta, now, r.halfLifeMs, r.bounds),
      ]);
      r.log.debug({ check: 'reputation', network: keys.net, delta, score: s, why }, 'reputation updated');
    } catch (err) {
      r.log.error({ check: 'reputation', network: keys.net, err: String(err) }, 'reputation store failed');
    }
  }

  function storeFailed(keys: { net: string }, err: unknown): Verdict {
    r.log.error({ check: 'reputation', network: keys.net, err: String(err) }, 'reputation store failed');
    return r.onStoreError === 'defer'
      ? defer(failReply, `reputation store failed: ${String(err)}`)
      : next('reputation store failed');
  }

  /** The verdict on a client whose network scores `net` and whose address scores `own`. */
  function verdictOf(keys: { net: string }, net: number, own: number): Verdict {
    // The network's record escalates; the address's own record decides whether this client may be
    // refused at all. A neighbour that never offended is at most doubted.
    const score = Math.max(net, own);
    if (score < r.doubt) return next();
    const round = (n: number) => Math.round(n * 100) / 100;
    const why = `network ${keys.net} scored ${round(net)}, address ${round(own)}`;
    const offended = own >= r.offender;
    if (offended && score >= r.reject) return reject(rejectReply, `${why} >= reject ${r.reject}`);
    if (offended && score >= r.defer) {
      // DEFER_IF_PERMIT: the later checks still judge this client, so its next offence is still
      // refused by them and still counts; otherwise the record would stop at `defer` forever.
      return defer(deferReply, `${why} >= defer ${r.defer}`, true);
    }
    const doubtWhy = offended
      ? `${why} >= doubt ${r.doubt}`
      : `${why} >= doubt ${r.doubt}; this address never offended: doubted only`;
    return next(doubtWhy, [
      { check: 'reputation', tag: `${REPUTATION_DELAY_TAG}${r.greylistDelay}`, doubt: true, score: 1 },
    ]);
  }

  async function judgeAsync(store: ReputationStore, keys: { net: string; addr: string }): Promise<Verdict> {
    let net: number;
    let own: number;
    try {
      const now = r.clock.now();
      [net, own] = await Promise.all([
        store.score(keys.net, now, r.halfLifeMs),
        keys.addr === keys.net ? 0 : store.score(keys.addr, now, r.halfLifeMs),
      ]);
      if (keys.addr === keys.net) own = net;
    } catch (err) {
      return storeFailed(keys, err);
    }
    return verdictOf(keys, net, own);
  }

  const check: Check = {
    name: 'reputation',
    stage: 'connect',
    run(session): Verdict | Promise<Verdict> {
      // The address as the session parsed it once (clientIp), shared with the other checks.
      const ip = clientIp(session);
      const keys = ip ? keysOf(ip) : undefined;
      if (!keys) return next('client address is not an IP address');
      const { store } = r;
      // A store in process memory answers at once: no promise, no turn of the microtask queue.
      if (!store.scoreNow) return judgeAsync(store, keys);
      let net: number;
      let own: number;
      try {
        const now = r.clock.now();
        net = store.scoreNow(keys.net, now, r.halfLifeMs);
        own = keys.addr === keys.net ? net : store.scoreNow(keys.addr, now, r.halfLifeMs);
      } catch (err) {
        return storeFailed(keys, err);
      }
      return verdictOf(keys, net, own);
    },
  };

  return {
    check,
    recordOutcome(session, decision) {
      // Most decisions add nothing (an ignored check, a next before DATA): no new promise for them.
      if (decision.check && r.ignore.has(decision.check)) return RECORDED;
      if (decision.action === 'reject') return add(session.clientAddress, r.points.rejection, 'rejection');
      if (decision.action === 'defer') return add(session.clientAddress, r.points.deferral, 'deferral');
      if (session.stage === 'data') return add(session.clientAddress, r.points.accepted, 'accepted');
      return RECORDED;
    },
    async recordEvent(clientAddress, event) {
      const delta =
        event === 'rejection'
          ? r.points.rejection
          : event === 'deferral'
            ? r.points.deferral
            : event === 'greylist-failure'
              ? r.points.greylistFailure
              : event === 'protocol-violation'
                ? r.points.protocolViolation
                : r.points.accepted;
      return add(clientAddress, delta, event);
    },
    async score(clientAddress) {
      const key = networkOf(clientAddress, r.net);
      if (!key) return 0;
      try {
        return await r.store.score(key, r.clock.now(), r.halfLifeMs);
      } catch {
        return 0;
      }
    },
  };
}
