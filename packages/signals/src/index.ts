/**
 * @mxguard/signals: opt-in signals that experienced operators add on top of the recommended
 * chain: geolocation (`geo`), passive OS fingerprinting with p0f (`os-fingerprint`), and the
 * relays of Received headers (`received`: a DATA-stage check that scores, never rejects).
 *
 * @packageDocumentation
 * @module @mxguard/signals
 */

export * from './factories.js';
export * from './geo.js';
export * from './geo-database.js';
export { addressMatcher, isPublic, type ParsedAddress, parseAddress } from './ip.js';
export * from './os-fingerprint.js';
export * from './p0f.js';
export * from './received.js';
export * from './received-check.js';
