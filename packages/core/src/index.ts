/**
 * @mxguard/core: the verdict model (Session, Decision, Reply), the chain runner with its Postfix
 * semantics, the scoring link, the config schema and the pure SMTP-time checks (HELO, addresses,
 * relaying, pipelining).
 *
 * @packageDocumentation
 * @module @mxguard/core
 */
export * from './chain.js';
export * from './checks/index.js';
export * from './config.js';
export * from './config-error.js';
export * from './deadline.js';
export * from './decision-log.js';
export * from './memo.js';
export * from './model.js';
export * from './optional.js';
export * from './pipelining.js';
export * from './presets.js';
export * from './rdns/index.js';
export * from './reply.js';
export * from './schema.js';
export * from './site.js';
export * from './tables/index.js';
export * from './weigh.js';
export * from './weigh-config.js';
