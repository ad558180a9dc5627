/**
 * @mxguard/dns: the Resolver port, its node:dns implementation (cache, coalescing, bounded
 * concurrency), a fake for tests, and the DNS-backed checks.
 *
 * @packageDocumentation
 * @module @mxguard/dns
 */
export * from './checks/dnslists.js';
export * from './checks/domain.js';
export * from './checks/fcrdns.js';
export * from './checks/helo.js';
export type { TempfailAction } from './checks/options.js';
export * from './config.js';
export * from './factories.js';
export * from './fake.js';
export * from './lists.js';
export * from './listspec.js';
export * from './names.js';
export * from './prefetch.js';
export * from './rdns.js';
export * from './resolver.js';
export * from './types.js';
