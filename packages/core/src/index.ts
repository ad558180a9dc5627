export * from './chain.js';
export * from './config.js';
export * from './model.js';
export * from './pipelining.js';
export * from './reply.js';
export * from './site.js';
export * from './weigh.js';
