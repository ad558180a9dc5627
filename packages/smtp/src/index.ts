export * from './adapter.js';
export * from './anvil.js';
export * from './gateway.js';
export * from './pipelining.js';
export * from './received.js';
export * from './relay.js';
export * from './reply.js';
export * from './spool.js';
