/**
 * mxguard: the `mxguard` command line (`check`, `serve`, `policy`, `replay`, `config`) and the
 * runtime it wires from a config file, exported for adapters written over it (the Haraka
 * plugin).
 *
 * @packageDocumentation
 * @module mxguard
 */
// For adapters written in plain JavaScript over this runtime (the Haraka plugin): one log format.
// ... and one deadline: the time budget of each hook's answer, carried down to the DNS lookups.
export { currentDeadline, DEADLINE_GRACE_MS, decisionRecord, settleBy, withinBudget } from '@mxguard/core';
export * from './check.js';
export * from './config.js';
export * from './decisions.js';
export * from './http.js';
export * from './metrics.js';
export * from './observe.js';
export * from './program.js';
export * from './replay.js';
export * from './runtime.js';
export * from './serve.js';
export * from './wiring.js';
