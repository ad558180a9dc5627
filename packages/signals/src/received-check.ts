/**
 * `received`: the Received-header relays of a message, looked up in DNS lists, as a DATA-stage
 * check that only ever scores. It reads `session.headers` (the header block the adapter read at
 * DATA), takes the public addresses of the relays below the connecting client, asks the configured
 * lists about each, and returns `next` with capped findings for `weigh()`.
 *
 * It cannot reject, defer or accept: its `run` is typed to return a `NextVerdict`, it has no
 * `action` option, and its factory refuses one. Received headers are claims by strangers, and a
 * listed dynamic address in them is usually an honest ISP's customer who submitted through their
 * provider (DESIGN principle 3: judge the connecting IP, never the Received headers). The
 * connecting IP itself is `dnsbl`'s to judge, so it is skipped here. See docs/checks/received.md.
 */
import type { Check, CheckContext, NextVerdict, Session } from '@mxguard/core';
import { next, stageIndex } from '@mxguard/core';
import type { ListSpec, Resolver } from '@mxguard/dns';
import { listLabel, parseListSpecs, queryList } from '@mxguard/dns';
import type { ReceivedFinding } from './received.js';
import { scoreReceived } from './received.js';

/**
 * A check whose every answer is `next`: the type of `run` admits no final verdict, so nothing
 * built on it can refuse a message on its own.
 */
export interface ScoringCheck extends Check {
  /** Judges the session: only ever `next`, with findings that carry points. */
  run(session: Session, ctx: CheckContext): NextVerdict | Promise<NextVerdict>;
}

/** Options of {@link receivedCheck}. */
export interface ReceivedCheckOptions {
  /**
   * The DNS to ask. Without one (offline) the check is built but answers
   * `next("skipped: no resolver")` at run time.
   */
  readonly resolver?: Resolver;
  /**
   * DNS lists of IP addresses (RFC 5782) to look the relays up in, as postscreen names them:
   * `zone[=filter]` (e.g. `zen.spamhaus.org=127.0.0.[2..11]`). A `*weight` other than 1 is refused:
   * points come from `score`, and a negative weight (an allowlist) would let a forger earn trust
   * by naming an allowlisted relay in a header it wrote itself.
   */
  readonly lists: readonly (string | ListSpec)[];
  /** Points per listed relay (one relay counts once, whatever number of lists list it). @default 0.5 */
  readonly score?: number;
  /**
   * Cap on the check's total. Keep it below every `weigh()` threshold: headers may tip a sender
   * other evidence already doubts, never decide alone.
   * @default 1
   */
  readonly maxScore?: number;
  /**
   * Topmost Received headers skipped as written by our own MTAs. `session.headers` is the block
   * as the client sent it (neither smtp-server nor `mxguard serve` adds our own Received line
   * before the check runs), so the default skips none; behind an MTA that stamps its header
   * first (a content filter after Postfix), set 1 per own hop.
   * @default 0
   */
  readonly skipTop?: number;
  /** Relays looked up at most, topmost first, after `skipTop`. @default 5 */
  readonly maxRelays?: number;
  /** Addresses and CIDRs never looked up (our relays, our forwarders). @default [] */
  readonly trusted?: readonly string[];
  /** Name in traces and on findings. @default 'received' */
  readonly name?: string;
}

function nonNegative(what: string, v: number): number {
  if (!Number.isFinite(v) || v < 0) throw new TypeError(`received: "${what}" must be a non-negative number`);
  return v;
}

/** Parses the `lists` option: at least one list, no weights (see {@link ReceivedCheckOptions.lists}). */
export function receivedListSpecs(lists: unknown): ListSpec[] {
  if (!Array.isArray(lists) || lists.length === 0)
    throw new TypeError('received: "lists" must be a non-empty list of DNS list zones ("zone[=filter]")');
  const specs = parseListSpecs(lists as (string | ListSpec)[], 'received: "lists"');
  for (const s of specs) {
    if (s.weight !== 1) {
      throw new TypeError(
        `received: list "${s.spec}": no weights here; a relay's points are "score" (capped by "maxScore"), ` +
          'and a header cannot earn trust (an allowlisted relay is as easy to forge as any other)',
      );
    }
  }
  return specs;
}

/**
 * The `received` check (stage `data`). Every answer is `next`; when a relay is listed the answer
 * carries `ReceivedFinding`s (`relay-listed:<zone>:<ip>`, points capped by `maxScore`) for a
 * later `weigh` link. Temporary DNS failures count as "not listed" (DESIGN principle 2).
 */
export function receivedCheck(options: ReceivedCheckOptions): ScoringCheck {
  const name = options.name ?? 'received';
  const specs = receivedListSpecs(options.lists);
  const score = nonNegative('score', options.score ?? 0.5);
  const maxScore = nonNegative('maxScore', options.maxScore ?? 1);
  const skipTop = nonNegative('skipTop', options.skipTop ?? 0);
  const maxRelays = nonNegative('maxRelays', options.maxRelays ?? 5);
  const trusted = [...(options.trusted ?? [])];
  const resolver = options.resolver;
  return {
    name,
    stage: 'data',
    readsHeaders: true,
    maxScore,
    async run(session, ctx): Promise<NextVerdict> {
      if (stageIndex(session.stage) < stageIndex('data')) return next('stage not reached');
      if (typeof session.headers !== 'string') return next('no headers yet');
      if (!resolver) return next('skipped: no resolver');
      let looked = 0;
      let temporary = 0;
      const listed = async (ip: string): Promise<string | undefined> => {
        looked += 1;
        const label = listLabel('ip', ip);
        const results = await Promise.all(specs.map((spec) => queryList(resolver, spec, label)));
        const hit = results.find((r) => r.status === 'listed');
        if (!hit && results.some((r) => r.status === 'temporary')) temporary += 1;
        return hit?.spec.zone;
      };
      const findings: ReceivedFinding[] = await scoreReceived(session.headers, {
        listed,
        name,
        score,
        maxScore,
        skipTop,
        maxRelays,
        trusted,
        clientAddress: session.clientAddress,
        log: ctx.log,
      });
      const total = findings.reduce((s, f) => s + f.score, 0);
      const parts = [`${looked} relay${looked === 1 ? '' : 's'} looked up`];
      if (findings.length > 0)
        parts.push(`${findings.length} listed, ${total} point${total === 1 ? '' : 's'}`);
      if (temporary > 0) parts.push(`${temporary} lookup${temporary === 1 ? '' : 's'} failed temporarily`);
      return next(parts.join('; '), findings);
    },
  };
}
