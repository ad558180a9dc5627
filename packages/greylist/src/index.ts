/**
 * @mxguard/greylist: postgrey's greylisting as a pure state machine (machine.ts), its keys and
 * allowlists, the `greylist` check, and two stores behind one interface: in memory (embedded
 * default, bounded, optionally persisted) and Redis (shared by several MX hosts, atomic).
 *
 * @packageDocumentation
 * @module @mxguard/greylist
 */
export * from './allowlist.js';
export * from './check.js';
export * from './key.js';
export * from './machine.js';
export * from './providers.js';
export * from './stores/config.js';
export * from './stores/memory.js';
export * from './stores/redis.js';
export * from './stores/types.js';
