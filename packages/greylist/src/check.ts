import type {
  Check,
  CheckContext,
  CheckFactory,
  Finding,
  ParsedIp,
  Session,
  Site,
  Verdict,
} from '@mxguard/core';
import { clientIp, defer, ipNetwork, next, reply, stringList, withOptions, z } from '@mxguard/core';
import { clientAllowlist, recipientAllowlist } from './allowlist.js';
import { type KeyOptions, networkTripletKey } from './key.js';
import type { GreylistDecision, GreylistOutcome, GreylistPolicy } from './machine.js';
import { policyFromOptions } from './machine.js';
import { PROVIDERS, providerEntries } from './providers.js';
import type { GreylistStore } from './stores/types.js';

/** What the greylist check needs from its environment. */
export interface GreylistEnv {
  /** Where triplets and client records live: `memoryStore()` or `redisStore()`. */
  readonly store: GreylistStore;
}

/** One decision, for a reputation module or metrics (`onDecision`). */
export interface GreylistEvent {
  /** What the greylist decided (new, early, passed, allowlisted, ...). */
  readonly outcome: GreylistOutcome;
  /** The client's IP address. */
  readonly clientAddress: string;
  /** The envelope sender (empty for the null sender). */
  readonly sender: string;
  /** The recipient judged. */
  readonly recipient: string;
  /** The triplet key, when the store was asked. */
  readonly key?: string;
  /** The store's decision, when the store was asked. */
  readonly decision?: GreylistDecision;
  /** The allowlist entry that matched, for `allowlisted`. */
  readonly allowedBy?: string;
  /** The doubts that sent the client here (selective mode). */
  readonly doubts: readonly Finding[];
  /** When, in ms since the epoch by the check's clock. */
  readonly now: number;
}

/** Counters, read by metrics exporters and the CLI. */
export interface GreylistStats {
  /** Decisions by outcome. */
  readonly outcomes: Record<GreylistOutcome, number>;
  /** Sessions not greylisted because nothing doubted the client (selective mode). */
  undoubted: number;
  /** Store failures (each one applied `onStoreError`). */
  storeErrors: number;
}

/** Options of the greylist check. Times are in seconds, as postgrey's. */
export interface GreylistOptions extends KeyOptions {
  /**
   * `selective`: greylist only when an earlier check left a finding with `doubt: true` (no PTR, a
   * dynamic-looking PTR, a DNS-list score under the reject threshold); `all`: every client, as
   * postgrey does. @default 'selective'
   */
  readonly mode?: 'selective' | 'all';
  /** Seconds a new triplet waits. @default 300 */
  readonly delay?: number;
  /** Seconds in which the first retry must come. @default 172800 (2 days) */
  readonly retryWindow?: number;
  /** Seconds after which an unseen record is forgotten. @default 3024000 (35 days) */
  readonly maxAge?: number;
  /** Passed triplets after which a client address skips the greylist; 0: never. @default 5 */
  readonly autoWhitelistClients?: number;
  /** A client's pass count moves at most once in this many seconds. @default 3600 */
  readonly autoWhitelistInterval?: number;
  /** Key by the full client address instead of its network (postgrey `--lookup-by-host`). @default false */
  readonly lookupByHost?: boolean;
  /** Clients never greylisted: addresses, CIDRs, host names, /regex/ (see allowlist.ts). @default [] */
  readonly allowClients?: readonly string[];
  /**
   * The shipped list of large providers (providers.ts): `true` for all categories, a list of
   * category names, or `false`. @default true
   */
  readonly providers?: boolean | readonly string[];
  /** Recipients never greylisted (postgrey whitelist_recipients syntax). @default ['postmaster@', 'abuse@'] */
  readonly allowRecipients?: readonly string[];
  /** What a failing store gives: `pass` (warn, count, go on) or `defer` (451 4.3.0). @default 'pass' */
  readonly onStoreError?: 'pass' | 'defer';
  /**
   * Reply text; `%s` is replaced by the seconds left, `%r` by the recipient domain (postgrey's
   * `--greylist-text` placeholders). @default 'Greylisted, please retry in %s seconds'
   */
  readonly text?: string;
  /** Defer only if nothing later rejects (Postfix DEFER_IF_PERMIT, postgrey's `--greylist-action`). @default true */
  readonly ifPermit?: boolean;
  /** Called after every decision, e.g. by a reputation module. Exceptions in it are logged, not thrown. */
  readonly onDecision?: (event: GreylistEvent) => void;
}

/** The greylist check and its counters. */
export interface GreylistCheck extends Check {
  /** Its counters since it was built, by outcome. */
  readonly stats: GreylistStats;
  /** The timings in force (delay, retry window, max age, auto-whitelist), from its options. */
  readonly policy: GreylistPolicy;
}

/** The default reply text. */
export const DEFAULT_TEXT = 'Greylisted, please retry in %s seconds';

/**
 * `greylist`: delays a new (client network, sender, recipient) triplet, as postgrey does.
 * Reply 450 4.2.0, as postgrey gives through Postfix (`450 4.2.0 ... Greylisted`): 4.2.0 rather than
 * 4.7.1 because some Exchange versions treated 4.7.1 as final (postgrey's comment, "Workaround for
 * an Exchange bug related to Greylisting"). A passing triplet gives `next` with a finding, never
 * `accept`: the checks after it still run.
 */
export function greylistCheck(env: GreylistEnv, options: GreylistOptions = {}): GreylistCheck {
  const name = 'greylist';
  const store = env.store;
  if (!store || typeof store.decide !== 'function') throw new TypeError(`${name}: needs a store`);
  const policy = policyFromOptions(options as Record<string, unknown>, name);
  const mode = options.mode ?? 'selective';
  if (mode !== 'selective' && mode !== 'all') throw new TypeError(`${name}: mode must be selective or all`);
  const onStoreError = options.onStoreError ?? 'pass';
  if (onStoreError !== 'pass' && onStoreError !== 'defer') {
    throw new TypeError(`${name}: onStoreError must be pass or defer`);
  }
  const keyOptions: KeyOptions = options.lookupByHost
    ? { ipv4Prefix: 32, ipv6Prefix: 128 }
    : { ipv4Prefix: options.ipv4Prefix ?? 24, ipv6Prefix: options.ipv6Prefix ?? 64 };
  if (!Number.isInteger(keyOptions.ipv4Prefix) || keyOptions.ipv4Prefix! < 0 || keyOptions.ipv4Prefix! > 32) {
    throw new TypeError(`${name}: ipv4Prefix must be an integer 0..32`);
  }
  if (
    !Number.isInteger(keyOptions.ipv6Prefix) ||
    keyOptions.ipv6Prefix! < 0 ||
    keyOptions.ipv6Prefix! > 128
  ) {
    throw new TypeError(`${name}: ipv6Prefix must be an integer 0..128`);
  }
  const providers = options.providers ?? true;
  if (Array.isArray(providers)) {
    const known = new Set(PROVIDERS.map((p) => p.name));
    for (const p of providers)
      if (!known.has(p)) throw new TypeError(`${name}: unknown provider category "${p}"`);
  }
  const clients = clientAllowlist([
    ...(providers === true
      ? providerEntries('all')
      : Array.isArray(providers)
        ? providerEntries(providers)
        : []),
    ...(options.allowClients ?? []),
  ]);
  const recipients = recipientAllowlist(options.allowRecipients ?? ['postmaster@', 'abuse@']);
  const text = options.text ?? DEFAULT_TEXT;
  reply(450, '4.2.0', text); // a bad text (a line break) is a config error now, not at the first defer
  const ifPermit = options.ifPermit ?? true;

  const stats: GreylistStats = {
    outcomes: { new: 0, early: 0, 'expired-restart': 0, passed: 0, 'whitelisted-client': 0, allowlisted: 0 },
    undoubted: 0,
    storeErrors: 0,
  };

  /**
   * A doubt may ask for a longer delay with a tag ending in `delay=SECONDS` (the reputation check's
   * `reoffender:delay=900`): a reoffender waits longer, never shorter than the policy's delay.
   */
  const policyFor = (doubts: readonly Finding[]): GreylistPolicy => {
    let delay = policy.delay;
    for (const d of doubts) {
      const m = /(?:^|[:;,])delay=(\d{1,7})$/.exec(d.tag);
      if (m) delay = Math.max(delay, Number(m[1]) * 1000);
    }
    return delay === policy.delay ? policy : Object.assign({}, policy, { delay });
  };

  return {
    name,
    stage: 'rcpt',
    stats,
    policy,
    // Synchronous unless the store must be waited for: a session the greylist lets by at once
    // (allowlisted, nothing doubts it) or decides from a memory store costs no promise and no trip
    // round the microtask queue.
    run(session: Session, ctx: CheckContext): Verdict | Promise<Verdict> {
      const rcpt = session.rcptTo;
      const sender = session.mailFrom;
      if (rcpt === undefined || sender === undefined) return next('greylist: no recipient yet');
      const doubts = doubtsOf(ctx.findings);

      // Cheap first: with nothing doubting the client, selective mode lets it by whatever the
      // allowlists say, so they are not read (a tenth of a microsecond to a microsecond a request,
      // the provider list's name suffixes). `allowlisted` counts the clients they kept from a delay.
      if (mode === 'selective' && doubts.length === 0) {
        stats.undoubted++;
        return next('greylist: nothing doubts this client');
      }
      const now = ctx.clock.now();
      // The client address parsed once a session (core's memo), shared with the other checks.
      const parsed = clientIp(session);
      const byClient = clients.match(session.clientAddress, session.rdns?.verified, parsed);
      const byRcpt = byClient === undefined ? recipients(rcpt) : undefined;
      const allowedBy = byClient ?? byRcpt;
      if (allowedBy !== undefined) {
        emit(ctx, {
          outcome: 'allowlisted',
          allowedBy,
          clientAddress: session.clientAddress,
          sender,
          recipient: rcpt,
          doubts,
          now,
        });
        return next(
          `greylist: ${byClient !== undefined ? 'client' : 'recipient'} allowlisted by ${allowedBy}`,
          [{ check: name, tag: 'allowlisted' }],
        );
      }
      if (parsed === null) {
        return next(`greylist: client address ${JSON.stringify(session.clientAddress)} is not an IP address`);
      }
      return ask(session, ctx, parsed, sender, rcpt, doubts, now);
    },
  };

  /**
   * Counts a decision and tells `onDecision`. The caller writes the whole event as one literal: an
   * object spread with properties added (`{...e, now}`) was measured at a tenth of a policy
   * server's CPU with every triplet greylisted (V8 cloned it on its slow path each time).
   */
  function emit(ctx: CheckContext, e: GreylistEvent): void {
    stats.outcomes[e.outcome]++;
    if (!options.onDecision) return;
    try {
      options.onDecision(e);
    } catch (err) {
      ctx.log.error({ check: name, err: String(err) }, 'greylist: onDecision failed');
    }
  }

  /**
   * The store's decision on the session's triplet, as a verdict: at once from a store that has
   * `decideNow` (the memory store), through a promise from one that must wait (Redis).
   */
  function ask(
    session: Session,
    ctx: CheckContext,
    parsed: ParsedIp,
    sender: string,
    rcpt: string,
    doubts: readonly Finding[],
    now: number,
  ): Verdict | Promise<Verdict> {
    const net = ipNetwork(parsed, keyOptions.ipv4Prefix ?? 24, keyOptions.ipv6Prefix ?? 64) as string;
    const key = networkTripletKey(net, sender, rcpt);
    const request = { triplet: key, client: parsed.address, policy: policyFor(doubts) };
    // Only the store's own failure is a store failure: what follows its answer is the check's.
    let atOnce: GreylistDecision | undefined;
    let pending: Promise<GreylistDecision> | undefined;
    try {
      if (store.decideNow) atOnce = store.decideNow(request, now);
      else pending = store.decide(request, now);
    } catch (err) {
      return storeFailed(err, ctx);
    }
    if (pending === undefined)
      return decided(atOnce as GreylistDecision, key, session, ctx, sender, rcpt, doubts, now);
    return pending.then(
      (decision) => decided(decision, key, session, ctx, sender, rcpt, doubts, now),
      (err: unknown) => storeFailed(err, ctx),
    );
  }

  /** A store that failed, by `onStoreError`: passed with a finding, or deferred 451 4.3.0. */
  function storeFailed(err: unknown, ctx: CheckContext): Verdict {
    stats.storeErrors++;
    const msg = err instanceof Error ? err.message : String(err);
    ctx.log.warn(
      { check: name, store: store.kind, err: msg, outcome: onStoreError },
      'greylist: store failed; applying onStoreError',
    );
    if (onStoreError === 'defer') {
      return defer(
        reply(451, '4.3.0', 'Temporary greylisting failure, please try again later'),
        `greylist: store ${store.kind} failed: ${msg}`,
      );
    }
    return next(`greylist: store ${store.kind} failed, passed: ${msg}`, [
      { check: name, tag: 'store-error' },
    ]);
  }

  /** The verdict of the store's decision on `key`, told to `onDecision` first. */
  function decided(
    decision: GreylistDecision,
    key: string,
    session: Session,
    ctx: CheckContext,
    sender: string,
    rcpt: string,
    doubts: readonly Finding[],
    now: number,
  ): Verdict {
    emit(ctx, {
      outcome: decision.outcome,
      key,
      decision,
      clientAddress: session.clientAddress,
      sender,
      recipient: rcpt,
      doubts,
      now,
    });
    const why = doubts.length > 0 ? `; doubt: ${doubts.map((d) => `${d.check}/${d.tag}`).join(', ')}` : '';
    if (decision.outcome === 'passed' || decision.outcome === 'whitelisted-client') {
      const how =
        decision.outcome === 'whitelisted-client'
          ? 'client auto-whitelisted'
          : decision.firstPass
            ? `triplet passed after ${Math.round(decision.delayedMs / 1000)}s`
            : 'triplet passed before';
      return next(`greylist: ${how} (${key})${why}`, [{ check: name, tag: decision.outcome }]);
    }
    const domain = rcpt.replace(/^<|>$/g, '').replace(/.*@/, '').toLowerCase();
    const r = reply(450, '4.2.0', text.replace('%s', String(decision.retryIn)).replace('%r', domain));
    return defer(
      r,
      `greylist: ${decision.outcome} triplet ${key}, ${decision.retryIn}s left${why}`,
      ifPermit,
    );
  }
}

const NO_DOUBTS: readonly Finding[] = [];

/** The findings that doubt the client; no new array when there are none (the common case). */
function doubtsOf(findings: readonly Finding[]): readonly Finding[] {
  let out: Finding[] | undefined;
  for (const f of findings) {
    if (f.doubt !== true) continue;
    if (out === undefined) out = [];
    out.push(f);
  }
  return out ?? NO_DOUBTS;
}

/** The greylist's options as a config writes them (`options.greylist`, or its `checks` entry). */
export const greylistOptions = z.strictObject({
  mode: z.enum(['selective', 'all']).optional().describe('selective: only clients an earlier check doubted'),
  delay: z.number().min(0).optional().describe('Seconds before a retry is accepted (postgrey --delay)'),
  retryWindow: z.number().min(0).optional().describe('Seconds a retry is awaited (postgrey --retry-window)'),
  maxAge: z.number().min(0).optional().describe('Seconds a passed triplet is kept (postgrey --max-age)'),
  autoWhitelistClients: z
    .number()
    .min(0)
    .optional()
    .describe('Passed deliveries after which a client skips greylisting'),
  autoWhitelistInterval: z
    .number()
    .min(0)
    .optional()
    .describe("Seconds in which a client's pass count moves at most once"),
  lookupByHost: z.boolean().optional().describe('Key by the client address, not its network'),
  ipv4Prefix: z
    .int()
    .min(0)
    .max(32)
    .optional()
    .describe('The network of an IPv4 client in the triplet (default 24)'),
  ipv6Prefix: z
    .int()
    .min(0)
    .max(128)
    .optional()
    .describe('The network of an IPv6 client in the triplet (default 64)'),
  allowClients: stringList
    .optional()
    .describe('Clients never greylisted: addresses, CIDRs, host names, /regex/'),
  providers: z
    .union([z.boolean(), stringList])
    .optional()
    .describe('The shipped list of large senders: all, none or categories'),
  allowRecipients: stringList.optional().describe('Recipients never greylisted'),
  onStoreError: z
    .enum(['pass', 'defer'])
    .optional()
    .describe('What a failing store gives: pass, or defer (451 4.3.0). Default: pass'),
  text: z.string().optional().describe('Text of the 4xx reply'),
  ifPermit: z
    .boolean()
    .optional()
    .describe('Defer only if nothing later rejects (DEFER_IF_PERMIT). Default: true'),
  action: z
    .enum(['defer', 'defer_if_permit'])
    .optional()
    .describe('defer: a plain 4xx; defer_if_permit (default): as ifPermit'),
  score: z
    .number()
    .optional()
    .describe("Accepted as every check's common option; the greylist does not score"),
});

/** Reads the greylist options from a config object, with clear errors; see GreylistOptions. */
export function greylistOptionsFromConfig(o: Record<string, unknown>): GreylistOptions {
  const out: Record<string, unknown> = {};
  const allowed = new Set([
    'mode',
    'delay',
    'retryWindow',
    'maxAge',
    'autoWhitelistClients',
    'autoWhitelistInterval',
    'lookupByHost',
    'ipv4Prefix',
    'ipv6Prefix',
    'allowClients',
    'providers',
    'allowRecipients',
    'onStoreError',
    'text',
    'ifPermit',
    'action',
    'score',
  ]);
  for (const [k, v] of Object.entries(o)) {
    if (!allowed.has(k)) throw new TypeError(`greylist: unknown option "${k}"`);
    if (k === 'action') {
      // The config's action: `defer` (plain 4xx) or `defer_if_permit` (the default).
      if (v !== 'defer' && v !== 'defer_if_permit') {
        throw new TypeError(
          `greylist: action must be defer or defer_if_permit (or warn), got ${JSON.stringify(v)}`,
        );
      }
      out.ifPermit = v === 'defer_if_permit';
      continue;
    }
    if (k === 'score') continue;
    if (['allowClients', 'allowRecipients'].includes(k)) {
      if (!Array.isArray(v) || !v.every((x) => typeof x === 'string')) {
        throw new TypeError(`greylist: ${k} must be a list of strings`);
      }
    }
    if (
      k === 'providers' &&
      typeof v !== 'boolean' &&
      !(Array.isArray(v) && v.every((x) => typeof x === 'string'))
    ) {
      throw new TypeError('greylist: providers must be true, false or a list of category names');
    }
    if ((k === 'lookupByHost' || k === 'ifPermit') && typeof v !== 'boolean') {
      throw new TypeError(`greylist: ${k} must be true or false`);
    }
    if (k === 'text' && typeof v !== 'string') throw new TypeError('greylist: text must be a string');
    out[k] = v;
  }
  return out as GreylistOptions;
}

/** The greylist's checks by config name, for `bindFactories(greylistFactories, { store })`. */
export const greylistFactories: Record<string, CheckFactory<GreylistEnv>> = {
  greylist: withOptions(greylistOptions, (options: Record<string, unknown>, _site: Site, env: GreylistEnv) =>
    greylistCheck(env, greylistOptionsFromConfig(options)),
  ),
};
