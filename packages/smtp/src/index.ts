/**
 * @mxguard/smtp: the adapter that runs an mxguard chain inside nodemailer's smtp-server, and
 * `startGateway()`, the filtering front MX behind `mxguard serve`.
 *
 * @packageDocumentation
 * @module @mxguard/smtp
 */
export * from './adapter.js';
export * from './anvil.js';
export * from './config.js';
export * from './gateway.js';
export * from './internals.js';
export * from './pipelining.js';
export * from './received.js';
export * from './relay.js';
export * from './reply.js';
export * from './spool.js';
