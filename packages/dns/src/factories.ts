/**
 * The DNS checks by config name, for buildPolicy / recommended(). Each factory reads and checks its
 * options (a bad value throws TypeError naming the check and the option) and takes the resolver
 * from the environment, with the DNS lists of the config (`dnsSettingsFromConfig`).
 */
import type { CheckFactory, HitAction } from '@mxguard/core';
import { checkFactory, checkOptions, hitActionSchema, z } from '@mxguard/core';
import type { RhsTarget } from './checks/dnslists.js';
import { dnsbl, dnswl, rhsbl } from './checks/dnslists.js';
import { recipientDomain, senderDomain } from './checks/domain.js';
import { fcrdns } from './checks/fcrdns.js';
import { heloResolves } from './checks/helo.js';
import {
  hitAction,
  hitActionOrOff,
  listsOption,
  numberOption,
  rejectCode,
  TEMPFAIL_ACTIONS,
  type TempfailAction,
  tempfailAction,
} from './checks/options.js';
import type { ListHealth } from './lists.js';
import type { ListSpec } from './listspec.js';
import type { Resolver } from './types.js';

/** What the DNS factories need. Only `resolver` is required. */
export interface DnsEnv {
  /** The DNS every check of the package asks (a `DnsResolver`, or a `FakeResolver` in tests). */
  readonly resolver: Resolver;
  /** Client-IP lists (config `dnsLists`): dnsbl uses all, dnswl those with a negative weight. */
  readonly dnsLists?: readonly (string | ListSpec)[];
  /** Right-hand-side lists (config `rhsLists`) for rhsbl. */
  readonly rhsLists?: readonly (string | ListSpec)[];
  /** Health probes of the lists: a shared ListHealth, or `false` for none. @default one per resolver */
  readonly health?: ListHealth | false;
}

function healthOf(env: DnsEnv): { health?: ListHealth | false } {
  return env.health === undefined ? {} : { health: env.health };
}

const TARGETS: readonly RhsTarget[] = ['helo', 'sender', 'ptr'];

function targetsOption(v: unknown): RhsTarget[] | undefined {
  if (v === undefined) return undefined;
  if (!Array.isArray(v) || !v.every((t) => (TARGETS as readonly unknown[]).includes(t))) {
    throw new TypeError(`rhsbl: targets must be a list of ${TARGETS.join(', ')}; got ${JSON.stringify(v)}`);
  }
  return v as RhsTarget[];
}

/**
 * The DNS checks by name: `dnsbl`, `dnswl`, `rhsbl`, `fcrdns`, `helo-resolves`, `sender-domain`,
 * `recipient-domain`. Options (all optional):
 * - dnsbl: `lists`, `threshold` (1), `action` ('reject');
 * - dnswl: `lists` (the negative-weight dnsLists), `action` ('accept' | 'score');
 * - rhsbl: `lists`, `targets` (['helo','sender','ptr']), `threshold` (1), `action` ('reject');
 * - fcrdns: `action` ('greylist'), `score`;
 * - helo-resolves: `action` ('reject'), `rejectCode` (450), `tempfail` ('defer_if_permit');
 * - sender-domain / recipient-domain: `action`, `rejectCode` (450), `nullMx` ('reject'),
 *   `privateMx` ('defer' / 'off'), `tempfail` ('defer_if_permit').
 */
const listsSchema = z
  .array(z.string())
  .optional()
  .describe('DNS lists, "zone=filter*weight" (default: the config\'s dnsLists / rhsLists)');
const threshold = z.number().optional().describe('The total weight of listings that fires');
const tempfail = z
  .enum(TEMPFAIL_ACTIONS as [TempfailAction, ...TempfailAction[]])
  .optional()
  .describe('What a DNS temporary failure gives');
const rejectCodeSchema = z
  .union([z.literal(450), z.literal(550)])
  .optional()
  .describe('Code when the domain is not found (450 as Postfix unknown_address_reject_code default)');
const domainSchema = checkOptions({
  rejectCode: rejectCodeSchema,
  nullMx: hitActionSchema.optional().describe('What a null MX (RFC 7505) gives'),
  privateMx: z
    .union([hitActionSchema, z.literal('off')])
    .optional()
    .describe('What an MX in private or reserved address space gives'),
  tempfail,
});

/**
 * The DNS checks by config name (`dnsbl`, `dnswl`, `rhsbl`, `rdns`, `sender-domain`, ...), each
 * building its check from the config's options; `bindFactories(dnsFactories, env)` gives them to
 * `recommended()` or a config's `provided` registry.
 */
export const dnsFactories: Record<string, CheckFactory<DnsEnv>> = {
  dnsbl: checkFactory<DnsEnv>(checkOptions({ lists: listsSchema, threshold }), (o, _site, env) =>
    dnsbl(env.resolver, listsOption('dnsbl', o.lists, env.dnsLists), {
      threshold: numberOption('dnsbl', 'threshold', o.threshold, 1),
      action: hitAction('dnsbl', 'action', o.action, 'reject'),
      ...healthOf(env),
    }),
  ),
  dnswl: checkFactory<DnsEnv>(
    z.strictObject({ lists: listsSchema, action: z.enum(['accept', 'score']).optional() }),
    (o, _site, env) => {
      const explicit = o.lists !== undefined;
      const all = listsOption('dnswl', o.lists, env.dnsLists);
      const action = o.action ?? 'accept';
      if (action !== 'accept' && action !== 'score') {
        throw new TypeError(`dnswl: action must be accept or score; got ${JSON.stringify(action)}`);
      }
      return dnswl(env.resolver, explicit ? all : all.filter((s) => s.weight < 0), {
        action,
        ...healthOf(env),
      });
    },
  ),
  rhsbl: checkFactory<DnsEnv>(
    checkOptions({
      lists: listsSchema,
      threshold,
      targets: z
        .array(z.enum(TARGETS as [RhsTarget, ...RhsTarget[]]))
        .optional()
        .describe('What is looked up'),
    }),
    (o, _site, env) => {
      const targets = targetsOption(o.targets);
      return rhsbl(env.resolver, listsOption('rhsbl', o.lists, env.rhsLists), {
        threshold: numberOption('rhsbl', 'threshold', o.threshold, 1),
        action: hitAction('rhsbl', 'action', o.action, 'reject'),
        ...(targets ? { targets } : {}),
        ...healthOf(env),
      });
    },
  ),
  fcrdns: checkFactory<DnsEnv>(checkOptions({}), (o, _site, env) =>
    fcrdns(env.resolver, {
      action: hitAction('fcrdns', 'action', o.action, 'greylist'),
      score: numberOption('fcrdns', 'score', o.score, 1),
    }),
  ),
  'helo-resolves': checkFactory<DnsEnv>(
    checkOptions({ rejectCode: rejectCodeSchema, tempfail }),
    (o, _site, env) =>
      heloResolves(env.resolver, {
        action: hitAction('helo-resolves', 'action', o.action, 'reject'),
        rejectCode: rejectCode('helo-resolves', o.rejectCode, 450),
        tempfail: tempfailAction('helo-resolves', o.tempfail, 'defer_if_permit'),
        score: numberOption('helo-resolves', 'score', o.score, 1),
      }),
  ),
  'sender-domain': checkFactory<DnsEnv>(domainSchema, (o, site, env) =>
    senderDomain(env.resolver, {
      ...domainOptions('sender-domain', o, 'defer'),
      ourDomains: site.ourDomains,
    }),
  ),
  'recipient-domain': checkFactory<DnsEnv>(domainSchema, (o, site, env) =>
    recipientDomain(env.resolver, {
      ...domainOptions('recipient-domain', o, 'off'),
      ourDomains: site.ourDomains,
    }),
  ),
};

function domainOptions(check: string, o: Record<string, unknown>, privateDefault: HitAction | 'off') {
  return {
    action: hitAction(check, 'action', o.action, 'reject'),
    rejectCode: rejectCode(check, o.rejectCode, 450),
    nullMx: hitAction(check, 'nullMx', o.nullMx, 'reject'),
    privateMx: hitActionOrOff(check, 'privateMx', o.privateMx, privateDefault),
    tempfail: tempfailAction(check, o.tempfail, 'defer_if_permit'),
    score: numberOption(check, 'score', o.score, 1),
  };
}
