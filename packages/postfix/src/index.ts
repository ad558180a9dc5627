/**
 * @mxguard/postfix: a Postfix policy server (SMTPD_POLICY_README) that answers with an mxguard chain.
 *
 * @packageDocumentation
 * @module @mxguard/postfix
 */

export * from './attributes.js';
export * from './config.js';
export * from './protocol.js';
export * from './server.js';
