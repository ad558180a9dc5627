import { bindFactories, recommended } from '@mxguard/core';
import { dnsFactories, type Resolver } from '@mxguard/dns';
import { greylistFactories, memoryStore } from '@mxguard/greylist';

export function presetPolicy(resolver: Resolver) {
  return recommended({
    ourDomains: ['example.com'],
    provided: {
      ...bindFactories(dnsFactories, { resolver, dnsLists: ['zen.spamhaus.org=127.0.0.[2..11]*3'] }),
      ...bindFactories(greylistFactories, { store: memoryStore({ maxTriplets: 100_000 }) }),
    },
    // Every check of the preset runs unless it is named here, with the reason.
    omit: {
      reputation: 'no reputation store in this server',
      'address-guessing': 'no list of valid recipients',
      callout: 'no frequently forged domains to verify',
    },
  });
}
// presetPolicy(resolver).off lists what is left out and why; .chain is what attach() takes.
