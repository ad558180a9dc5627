/** Reverse DNS: the dynamic-pool classifier and the `rdns-dynamic` and `rdns-missing` checks. */

export * from './checks.js';
export * from './classify.js';
