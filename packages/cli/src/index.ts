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
