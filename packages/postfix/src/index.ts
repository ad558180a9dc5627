/**
 * @mxguard/postfix: a Postfix policy server (SMTPD_POLICY_README) that answers with an mxguard chain.
 */

export * from './attributes.js';
export * from './protocol.js';
export * from './server.js';
