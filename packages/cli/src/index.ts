export * from './check.js';
export * from './runtime.js';
export * from './serve.js';
export * from './wiring.js';
