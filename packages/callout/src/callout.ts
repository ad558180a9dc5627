import type { Check, Clock, FinalVerdict, Logger, NextVerdict, Session } from '@mxguard/core';
import { defer, next, reject, reply, silentLogger, stageIndex } from '@mxguard/core';
import { LRUCache } from 'lru-cache';
import pLimit from 'p-limit';
import type { ResolvedTimes, VerifyTimes } from './cache.js';
import { consult, merge, pending, verifyTimes } from './cache.js';
import { isProbeable, smtpProbe } from './probe.js';
import { lookupTargets } from './targets.js';
import type {
  CalloutRecord,
  CalloutResolver,
  CalloutStatus,
  CalloutStore,
  Probe,
  ProbeResult,
} from './types.js';

/** Options of the `callout` check (sender address verification). */
export interface CalloutOptions extends VerifyTimes {
  /**
   * The frequently forged domains whose senders are verified (the article's example: aol.com,
   * hotmail.com). Empty: the check is off. Senders of any other domain are never probed, so no
   * stranger can make us talk to a host of their choosing (DESIGN principle 7).
   * @default []
   */
  readonly domains?: readonly string[];
  /** Where results are cached (memory or Redis). */
  readonly store: CalloutStore;
  /** The clock of the cache and the rate limits (a `ManualClock` in tests). */
  readonly clock: Clock;
  /** Where the MX of a listed domain comes from (`@mxguard/dns`'s Resolver fits). */
  readonly resolver: CalloutResolver;
  /** The SMTP conversation. @default smtpProbe() */
  readonly probe?: Probe;
  /** Where probes and store failures are logged. */
  readonly log?: Logger;
  /** TCP port of the probe. @default 25 */
  readonly port?: number;
  /** Our EHLO name in probes (Postfix: `$myhostname`). @default 'localhost' */
  readonly helo?: string;
  /**
   * MAIL FROM of probes. `''` is the null sender `<>`; Postfix's `address_verify_sender` defaults to
   * `$double_bounce_sender`, an address that discards mail, because some sites refuse `<>`.
   * @default ''
   */
  readonly probeSender?: string;
  /**
   * Probes a listed domain may receive a minute from us (a token bucket on the injected clock,
   * with this burst). Keeps the callout from becoming a flood a spammer aims at the domain.
   * @default 10
   */
  readonly probesPerMinute?: number;
  /** Probes in flight at once, all domains together. @default 10 */
  readonly maxInFlight?: number;
  /**
   * How long the session waits for a probe before answering "Address verification in progress"
   * (Postfix: `address_verify_poll_count` 3 x `address_verify_poll_delay` 3 s). The probe goes on in
   * the background and fills the cache for the client's retry.
   * @default 9000
   */
  readonly waitMs?: number;
  /** Time after which a probe is abandoned altogether (result `temporary`). @default 60_000 */
  readonly probeTimeoutMs?: number;
  /**
   * `unverified_sender_reject_code`: the code for a sender the MX said does not exist. Postfix's
   * default is 450, so a wrong answer (a broken MX, a cache bug) costs a delay, not lost mail;
   * sites that trust their callouts set 550.
   * @default 450
   */
  readonly rejectCode?: number;
  /** `unverified_sender_defer_code`: the 4xx for a sender not verified yet. @default 450 */
  readonly deferCode?: number;
  /**
   * `unverified_sender_tempfail_action`: what a probe that did not finish (or failed temporarily,
   * or was not sent because of the rate limits) does. Postfix's default `$reject_tempfail_action`
   * is `defer_if_permit`. Never a 5xx.
   * @default 'defer_if_permit'
   */
  readonly tempfailAction?: 'defer' | 'defer_if_permit' | 'next';
  /**
   * Allow probe targets on loopback and private networks. Only for tests and labs: in production
   * a listed domain's MX never points there, and if DNS says so it is poisoned or misconfigured.
   * @default false
   */
  readonly allowPrivateTargets?: boolean;
  /** Our own addresses: never probed. @default [] */
  readonly ourAddresses?: readonly string[];
  /** MX hosts tried. @default 3 */
  readonly maxMxHosts?: number;
  /** Addresses tried in total (Postfix `smtp_mx_address_limit`). @default 5 */
  readonly maxTargets?: number;
  /** Also probe IPv6 addresses of the MX hosts. @default true */
  readonly ipv6?: boolean;
}

interface Bucket {
  tokens: number;
  at: number;
}

/**
 * Sender address verification with a verify(8)-style cache, for the listed domains only: asks the
 * sender domain's MX whether the MAIL FROM address exists (up to RCPT TO, then QUIT) and answers
 * as Postfix's `reject_unverified_sender`:
 * - exists: no opinion (next);
 * - unknown user: `rejectCode` (450 by default) 4.1.7 "<addr>: Sender address rejected: undeliverable address: ...";
 * - not verified yet / temporary failure: `tempfailAction` with `deferCode` 4.1.7
 *   "<addr>: Sender address rejected: unverified address: ...";
 * - inconclusive (the MX refused the probe itself): next.
 */
export function callout(options: CalloutOptions): Check {
  if (!options.store) throw new TypeError('callout: a store is required');
  if (!options.clock) throw new TypeError('callout: a clock is required');
  if (!options.resolver) throw new TypeError('callout: a resolver is required');
  const times: ResolvedTimes = verifyTimes(options);
  const domains = new Set((options.domains ?? []).map((d) => d.trim().toLowerCase().replace(/\.$/, '')));
  const log = options.log ?? silentLogger;
  const probe = options.probe ?? smtpProbe();
  const port = options.port ?? 25;
  const helo = options.helo ?? 'localhost';
  const sender = options.probeSender ?? '';
  const perMinute = options.probesPerMinute ?? 10;
  const maxInFlight = options.maxInFlight ?? 10;
  const waitMs = options.waitMs ?? 9000;
  const probeTimeoutMs = options.probeTimeoutMs ?? 60_000;
  const rejectCode = options.rejectCode ?? 450;
  const deferCode = options.deferCode ?? 450;
  const tempfail = options.tempfailAction ?? 'defer_if_permit';
  if (!Number.isInteger(port) || port < 1 || port > 65535) throw new TypeError(`callout: bad port ${port}`);
  if (!(perMinute > 0)) throw new TypeError('callout: probesPerMinute must be positive');
  if (!Number.isInteger(maxInFlight) || maxInFlight < 1)
    throw new TypeError('callout: maxInFlight must be >= 1');
  if (!(rejectCode >= 400 && rejectCode < 600)) throw new TypeError('callout: rejectCode must be 4xx or 5xx');
  if (!(deferCode >= 400 && deferCode < 500)) throw new TypeError('callout: deferCode must be 4xx');
  if (!['defer', 'defer_if_permit', 'next'].includes(tempfail))
    throw new TypeError('callout: bad tempfailAction');

  const limit = pLimit(maxInFlight);
  const buckets = new LRUCache<string, Bucket>({ max: Math.max(16, domains.size * 2) });
  // Probes under way in this process, so concurrent sessions for one address share one probe.
  const inflight = new Map<string, Promise<CalloutStatusText>>();

  function takeToken(domain: string, now: number): boolean {
    const b = buckets.get(domain) ?? { tokens: perMinute, at: now };
    const tokens = Math.min(perMinute, b.tokens + ((now - b.at) * perMinute) / 60_000);
    if (tokens < 1) {
      buckets.set(domain, { tokens, at: now });
      return false;
    }
    buckets.set(domain, { tokens: tokens - 1, at: now });
    return true;
  }

  async function runProbe(
    key: string,
    domain: string,
    session: Session,
    base: CalloutRecord | undefined,
  ): Promise<CalloutStatusText> {
    // The pending marker tells other sessions and other MX hosts sharing the store that a probe
    // is under way, so none of them sends a second one within probeTtlMs.
    try {
      const at = options.clock.now();
      await options.store.set(key, pending(base, at, times), at);
    } catch (err) {
      log.error({ check: 'callout', err: String(err) }, 'callout store failed');
    }
    let targets: Awaited<ReturnType<typeof lookupTargets>>;
    try {
      targets = await lookupTargets(options.resolver, domain, {
        clientAddress: session.clientAddress,
        ourAddresses: options.ourAddresses ?? [],
        allowPrivate: options.allowPrivateTargets ?? false,
        maxHosts: options.maxMxHosts ?? 3,
        maxAddresses: options.maxTargets ?? 5,
        ipv6: options.ipv6 ?? true,
      });
    } catch (err) {
      // The Resolver port returns failures; a custom one that throws is a temporary failure too.
      targets = {
        ok: false,
        status: 'temporary',
        text: `MX lookup of ${domain} failed: ${String(err).slice(0, 100)}`,
      };
    }
    let result: ProbeResult;
    if (!targets.ok) {
      result = { status: targets.status, text: targets.text };
      if (targets.status === 'inconclusive')
        log.warn({ check: 'callout', domain, why: targets.text }, 'no probe target');
    } else {
      if (targets.refused.length > 0) {
        log.warn({ check: 'callout', domain, refused: targets.refused }, 'refused probe targets');
      }
      const signal = AbortSignal.timeout(probeTimeoutMs);
      try {
        result = await probe(targets.targets, key, { port, helo, sender, signal });
      } catch (err) {
        result = { status: 'temporary', text: `probe failed: ${String(err).slice(0, 200)}` };
      }
    }
    const now = options.clock.now();
    let stored: CalloutStatusText = { status: result.status, text: result.text };
    try {
      const current = await options.store.get(key, now);
      const rec = merge(current, result, now, times);
      await options.store.set(key, rec, now);
      stored = { status: rec.status, text: rec.text };
    } catch (err) {
      log.error({ check: 'callout', err: String(err) }, 'callout store failed');
    }
    log.info({ check: 'callout', address: key, result: result.status, text: result.text }, 'probe done');
    return stored;
  }

  function start(
    key: string,
    domain: string,
    session: Session,
    base: CalloutRecord | undefined,
  ): Promise<CalloutStatusText> {
    const p = limit(() => runProbe(key, domain, session, base)).finally(() => inflight.delete(key));
    inflight.set(key, p);
    return p;
  }

  function waitFor(p: Promise<CalloutStatusText>): Promise<CalloutStatusText | undefined> {
    return new Promise((resolve) => {
      const timer = setTimeout(() => resolve(undefined), waitMs);
      p.then(
        (r) => {
          clearTimeout(timer);
          resolve(r);
        },
        () => {
          clearTimeout(timer);
          resolve(undefined);
        },
      );
    });
  }

  function verdict(addr: string, status: CalloutStatus, text: string): NextVerdict | FinalVerdict {
    const a = addr.slice(0, 254);
    const why = text.replace(/[\r\n]/g, ' ').slice(0, 250);
    switch (status) {
      case 'exists':
        return next(`sender ${a} verified: ${why}`);
      case 'inconclusive':
        return next(`sender ${a} could not be verified: ${why}`);
      case 'unknown-user': {
        const r = reply(
          rejectCode,
          `${Math.floor(rejectCode / 100)}.1.7`,
          `<${a}>: Sender address rejected: undeliverable address: ${why}`,
        );
        return rejectCode >= 500
          ? reject(r, `sender ${a} does not exist: ${why}`)
          : defer(r, `sender ${a} does not exist: ${why}`);
      }
      default: {
        if (tempfail === 'next') return next(`sender ${a} not verified: ${why}`);
        const r = reply(deferCode, '4.1.7', `<${a}>: Sender address rejected: unverified address: ${why}`);
        return defer(r, `sender ${a} not verified (${status}): ${why}`, tempfail === 'defer_if_permit');
      }
    }
  }

  return {
    name: 'callout',
    stage: 'mail',
    async run(session) {
      if (domains.size === 0) return next();
      if (stageIndex(session.stage) < stageIndex('mail')) return next('stage not reached');
      const from = session.mailFrom;
      if (!from) return next();
      const at = from.lastIndexOf('@');
      if (at <= 0) return next();
      const domain = from
        .slice(at + 1)
        .toLowerCase()
        .replace(/\.$/, '');
      if (!domains.has(domain)) return next();
      if (!isProbeable(from)) return next('sender address cannot be probed');
      // verify(8) keys by the address; the domain part is case-insensitive, the local part is kept.
      const key = `${from.slice(0, at)}@${domain}`;
      const now = options.clock.now();
      let c: ReturnType<typeof consult>;
      try {
        c = consult(await options.store.get(key, now), now, times);
      } catch (err) {
        log.error({ check: 'callout', err: String(err) }, 'callout store failed');
        return verdict(key, 'temporary', 'address verification problem');
      }
      let status: CalloutStatus = c.status;
      let text = c.text;
      let p: Promise<CalloutStatusText> | undefined = inflight.get(key);
      let held: string | undefined;
      if (!p && c.probe) {
        if (limit.activeCount + limit.pendingCount >= 2 * maxInFlight) {
          log.warn({ check: 'callout', address: key }, 'too many probes in flight; not probing');
          held = 'too many address verifications in progress';
        } else if (!takeToken(domain, now)) {
          log.warn({ check: 'callout', domain }, 'probe rate limit reached; not probing');
          held = `address verification rate limit for ${domain} reached`;
        } else {
          // Registered before any await, so concurrent sessions for this address share it.
          p = start(key, domain, session, c.record);
        }
      }
      // Wait only when we know nothing useful yet: a stale entry answers at once while it is
      // refreshed in the background, as verify(8) does.
      if (p && (status === 'todo' || status === 'temporary')) {
        const r = await waitFor(p);
        if (r) {
          status = r.status;
          text = r.text;
        }
      }
      if (status === 'todo') text = held ?? 'Address verification in progress';
      return verdict(key, status, text);
    },
  };
}

interface CalloutStatusText {
  readonly status: CalloutStatus;
  readonly text: string;
}
