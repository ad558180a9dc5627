import type { Check, Session } from '@mxguard/core';
import { defer, next, reject, reply } from '@mxguard/core';

/** As reject_non_fqdn_helo_hostname: 504 5.5.2 when the HELO has no dot. */
export const heloDot: Check = {
  name: 'helo-dot',
  stage: 'helo',
  run(s) {
    if (s.helo === undefined || s.helo.includes('.')) return next();
    return reject(
      reply(504, '5.5.2', `<${s.helo}>: Helo command rejected: need fully-qualified hostname`),
      'no dot',
    );
  },
};

/** Refuses one sender domain at MAIL. */
export const senderBlock: Check = {
  name: 'sender-block',
  stage: 'mail',
  run(s) {
    if (!s.mailFrom?.endsWith('@bad.test')) return next();
    return reject(
      reply(550, '5.7.1', `<${s.mailFrom}>: Sender address rejected: Access denied`),
      'listed sender',
    );
  },
};

/** Refuses one recipient at RCPT. */
export const recipientBlock: Check = {
  name: 'recipient-block',
  stage: 'rcpt',
  run(s) {
    if (s.rcptTo !== 'blocked@example.com') return next();
    return reject(
      reply(554, '5.7.1', `<${s.rcptTo}>: Recipient address rejected: Access denied`),
      'listed rcpt',
    );
  },
};

/** As Postfix's reject_unauth_pipelining, from the adapter's flags. */
export const pipelining: Check = {
  name: 'pipelining',
  stage: 'rcpt',
  run(s) {
    if (s.flags?.earlyTalker)
      return reject(reply(550, '5.5.1', 'Protocol error: talked before the greeting'), 'early talker');
    if (s.flags?.unauthorizedPipelining)
      return reject(reply(550, '5.5.1', 'Protocol error: improper command pipelining'), 'pipelining');
    return next();
  },
};

/**
 * A greylist in miniature: the first delivery attempt of a triplet from `grey.test` senders is
 * deferred; a retry after 300 s (on the chain's clock) passes.
 */
export function miniGreylist(): Check {
  const firstSeen = new Map<string, number>();
  return {
    name: 'mini-greylist',
    stage: 'rcpt',
    run(s: Session, ctx) {
      if (!s.mailFrom?.endsWith('@grey.test')) return next();
      const key = `${s.clientAddress}/${s.mailFrom}/${s.rcptTo}`;
      const now = ctx.clock.now();
      const first = firstSeen.get(key);
      if (first === undefined) firstSeen.set(key, now);
      if (first === undefined || now - first < 300_000) {
        return defer(reply(450, '4.7.1', 'Greylisted, try again in 300 seconds'), 'new triplet');
      }
      return next('triplet seen before');
    },
  };
}
