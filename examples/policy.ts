import {
  type Check,
  chain,
  defer,
  heloFqdn,
  next,
  rdnsDynamic,
  relayCheck,
  reply,
  site,
} from '@mxguard/core';
import { dnsbl, parseListSpecs, type Resolver, senderDomain } from '@mxguard/dns';
import { greylistCheck, memoryStore } from '@mxguard/greylist';

export function myPolicy(resolver: Resolver) {
  const us = site({ ourDomains: ['example.com'], help: { url: 'https://example.com/mail-help' } });
  const store = memoryStore({ maxTriplets: 100_000 });
  const noBulk: Check = {
    name: 'no-bulk',
    stage: 'mail',
    run: (s) =>
      s.mailFrom?.endsWith('@bulk.example.net')
        ? defer(reply(450, '4.7.1', 'Not today, please try tomorrow'), 'site rule')
        : next(),
  };
  return chain(
    [
      relayCheck({}, us), // reject_unauth_destination
      heloFqdn({ action: 'reject' }), // reject_non_fqdn_helo_hostname (default: a doubt)
      dnsbl(resolver, parseListSpecs(['zen.spamhaus.org=127.0.0.[2..11]*3'])),
      noBulk, // a site rule of your own
      { check: senderDomain(resolver), mode: 'warn' }, // see what it would do first
      rdnsDynamic({ action: 'greylist' }), // a doubt, not a refusal
      greylistCheck({ store }, { mode: 'selective' }), // delay only the doubted
    ],
    { help: us.help },
  );
}
// const d = await myPolicy(new DnsResolver({ servers: ['127.0.0.1:53'] }))
//   .evaluate({ clientAddress: '192.0.2.7', helo: 'mail.example.net', mailFrom: 'a@example.net', rcptTo: 'b@example.com', stage: 'rcpt' });
// d.action, d.reply ({ code, enhanced, text }), d.trace
