/**
 * @mxguard/reputation: a per-address and per-network score of past offences, so that reoffenders
 * are hit harder, with memory and Redis stores.
 *
 * @packageDocumentation
 * @module @mxguard/reputation
 */
export * from './config.js';
export * from './guessing.js';
export * from './network.js';
export * from './reputation.js';
export type { MemoryReputationStoreOptions } from './stores/memory.js';
export { MemoryReputationStore, REPUTATION_OVERHEAD_BYTES, reputationEntryBytes } from './stores/memory.js';
export type { RedisReputationStoreOptions } from './stores/redis.js';
export { RedisReputationStore } from './stores/redis.js';
export * from './types.js';
