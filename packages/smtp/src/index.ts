export * from './adapter.js';
export * from './gateway.js';
export * from './pipelining.js';
export * from './reply.js';
export * from './spool.js';
