// For adapters written in plain JavaScript over this runtime (the Haraka plugin): one log format.
export { decisionRecord } from '@mxguard/core';
export * from './check.js';
export * from './config.js';
export * from './replay.js';
export * from './runtime.js';
export * from './serve.js';
export * from './wiring.js';
