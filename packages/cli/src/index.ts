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
// The status page, for a process of its own (smtp-server, Haraka) to serve on its HTTP server.
export {
  type ShownDecision,
  type ShownStep,
  StatusBoard,
  type StatusBoardOptions,
} from './status/board.js';
export { STATUS_CSP, type StatusProviders, statusHandler, statusRoutes } from './status/handler.js';
export { type StatusMountOptions, statusHealth, statusMount } from './status/mount.js';
export type { StatusHealth } from './status/page.js';
export * from './wiring.js';
