/**
 * @mxguard/callout: recipient verification by callout (an SMTP RCPT probe of the next hop), with
 * its cache in memory or in Redis.
 *
 * @packageDocumentation
 * @module @mxguard/callout
 */
export * from './cache.js';
export * from './callout.js';
export * from './config.js';
export * from './probe.js';
export type { MemoryCalloutStoreOptions } from './stores/memory.js';
export { CALLOUT_OVERHEAD_BYTES, calloutEntryBytes, MemoryCalloutStore } from './stores/memory.js';
export type { RedisCalloutStoreOptions } from './stores/redis.js';
export { RedisCalloutStore } from './stores/redis.js';
export * from './targets.js';
export * from './types.js';
