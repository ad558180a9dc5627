/**
 * From Postfix policy attributes (SMTPD_POLICY_README, "Protocol description") to core's Session.
 */

import type { ReverseDns, Session, Stage } from '@mxguard/core';
import type { PolicyRequest } from './protocol.js';

/**
 * Postfix `protocol_state` to our stage. END-OF-MESSAGE (smtpd_end_of_data_restrictions) is judged
 * as `data` too: a site that calls the policy service from both smtpd_data_restrictions and
 * smtpd_end_of_data_restrictions runs its data checks twice. Other states (VRFY, ETRN, ...) are not
 * judged: the answer is DUNNO.
 */
export const PROTOCOL_STATES: Readonly<Record<string, Stage>> = {
  CONNECT: 'connect',
  EHLO: 'helo',
  HELO: 'helo',
  MAIL: 'mail',
  RCPT: 'rcpt',
  DATA: 'data',
  BDAT: 'data',
  'END-OF-MESSAGE': 'data',
};

/** The attributes the policy server reads from a request (its parser keeps only these). */
export const READ_ATTRIBUTES: ReadonlySet<string> = new Set([
  'request',
  'protocol_state',
  'client_address',
  'client_port',
  'client_name',
  'reverse_client_name',
  'helo_name',
  'sender',
  'recipient',
  'recipient_count',
  'encryption_protocol',
  'sasl_username',
  'instance',
  'queue_id',
]);

/** What `unknown` in `client_name` / `reverse_client_name` is taken to mean. */
export type UnknownName = 'temporary' | 'absent';

/** Options of the attribute mapping. */
export interface MappingOptions {
  /**
   * Postfix writes `unknown` both when the client has no PTR record and when the lookup failed
   * temporarily; the policy protocol does not say which. `temporary` (the default) maps it to
   * `rdns.error = 'temporary'`, so no check treats a DNS hiccup as proof (DESIGN: prove false, a
   * temporary failure is never a 5xx). `absent` maps it to "no PTR". An `enrich` hook that does its
   * own PTR lookup overrides either.
   * @default 'temporary'
   */
  readonly unknownName?: UnknownName;
}

/** The result of mapping: a session, or why the request cannot be judged (answered with DUNNO). */
export type Mapped =
  | {
      /** The request could be mapped. */
      readonly ok: true;
      /** The session the chain judges, built from the request's attributes. */
      readonly session: Session;
    }
  | {
      /** The request could not be mapped. */
      readonly ok: false;
      /** Why, for the log line of the DUNNO answer. */
      readonly why: string;
    };

function nonEmpty(v: string | undefined): string | undefined {
  return v === undefined || v === '' ? undefined : v;
}

function lowerName(v: string): string {
  const lower = v.toLowerCase();
  return lower.endsWith('.') ? lower.slice(0, -1) : lower;
}

/**
 * Reverse DNS as Postfix saw it. `reverse_client_name` is the PTR name, `client_name` the name that
 * also resolves back to the address (forward-confirmed), each `unknown` when there is none.
 * - both known: `{ names: [reverse], verified: client_name }`
 * - PTR known, not confirmed: `{ names: [reverse], verified: null }`
 * - PTR `unknown`: by `unknownName`, `{ names: [], verified: null, error: 'temporary' }` or
 *   `{ names: [], verified: null }`.
 * - neither attribute sent: undefined (not looked up).
 */
export function rdnsOf(req: PolicyRequest, unknownName: UnknownName): ReverseDns | undefined {
  const verifiedRaw = nonEmpty(req.get('client_name'));
  // Postfix < 2.9 sends no reverse_client_name: the verified name is then the only name we have.
  const reverseRaw = nonEmpty(req.get('reverse_client_name')) ?? verifiedRaw;
  if (reverseRaw === undefined) return undefined;
  const verified =
    verifiedRaw !== undefined && verifiedRaw.toLowerCase() !== 'unknown' ? lowerName(verifiedRaw) : null;
  if (reverseRaw.toLowerCase() === 'unknown') {
    if (verified !== null) return { names: [verified], verified };
    return unknownName === 'temporary'
      ? { names: [], verified: null, error: 'temporary' }
      : { names: [], verified: null };
  }
  const reverse = lowerName(reverseRaw);
  const names = verified !== null && verified !== reverse ? [reverse, verified] : [reverse];
  return { names, verified };
}

/**
 * Builds the session of one request. `sender=` is empty both for the null sender `<>` and before
 * MAIL FROM: it is the null sender only from the MAIL stage on. `recipient` is judged only from
 * RCPT on. `encryption_protocol` non-empty means TLS.
 */
export function sessionOf(req: PolicyRequest, options: MappingOptions = {}): Mapped {
  const request = req.get('request');
  if (request !== 'smtpd_access_policy')
    return { ok: false, why: `request type ${request ?? '(none)'} is not judged` };
  const state = (req.get('protocol_state') ?? '').toUpperCase();
  const stage = PROTOCOL_STATES[state];
  if (stage === undefined) return { ok: false, why: `protocol_state ${state || '(none)'} is not judged` };
  const clientAddress = nonEmpty(req.get('client_address'));
  if (clientAddress === undefined) return { ok: false, why: 'no client_address' };

  const s: {
    -readonly [K in keyof Session]: Session[K];
  } = { clientAddress, stage };
  const port = Number(req.get('client_port'));
  if (Number.isInteger(port) && port > 0 && port < 65536) s.clientPort = port;
  const rdns = rdnsOf(req, options.unknownName ?? 'temporary');
  if (rdns) s.rdns = rdns;
  const helo = nonEmpty(req.get('helo_name'));
  if (helo !== undefined) s.helo = helo;
  const sender = req.get('sender');
  if (sender !== undefined && (sender !== '' || stage === 'mail' || stage === 'rcpt' || stage === 'data')) {
    s.mailFrom = sender;
  }
  const recipient = nonEmpty(req.get('recipient'));
  if (recipient !== undefined && stage !== 'connect' && stage !== 'helo' && stage !== 'mail')
    s.rcptTo = recipient;
  const enc = req.get('encryption_protocol');
  if (enc !== undefined) s.tls = enc !== '';
  const sasl = nonEmpty(req.get('sasl_username'));
  if (sasl !== undefined) s.authUser = sasl;
  // Made only when there is a flag to carry.
  let flags: Record<string, string | number> | undefined;
  const instance = nonEmpty(req.get('instance'));
  if (instance !== undefined) flags = { postfixInstance: instance };
  const queueId = nonEmpty(req.get('queue_id'));
  if (queueId !== undefined) {
    flags ??= {};
    flags.postfixQueueId = queueId;
  }
  const countText = req.get('recipient_count');
  const count = Number(countText);
  if (countText !== undefined && Number.isInteger(count) && count >= 0) {
    flags ??= {};
    flags.postfixRecipientCount = count;
  }
  if (flags) s.flags = flags;
  return { ok: true, session: s };
}
