export * from './model.js';
export * from './reply.js';
export * from './chain.js';
export * from './weigh.js';
export * from './site.js';
