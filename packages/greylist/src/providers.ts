/**
 * Large senders that retry from another address than the first attempt (a pool spread over many
 * networks, so even a /24 key changes), or retry too late or never. Greylisting them delays mail
 * for hours or loses it; postgrey ships a list for this reason (/etc/postgrey/whitelist_clients).
 *
 * Sources (users extend the list with `allowClients`; re-check the ranges yearly):
 * - postgrey 1.37's whitelist_clients as installed by Debian (/etc/postgrey/whitelist_clients):
 *   every host name below without another source comes from there, with postgrey's date and reason.
 * - Google: the SPF netblocks `_netblocks.google.com`, `_netblocks2.google.com` (TXT).
 * - Microsoft Exchange Online: `spf.protection.outlook.com` (TXT) and postgrey's 2018 German pool.
 * - Amazon SES: `amazonses.com` SPF (TXT).
 * - Mailchimp: postgrey's 2018-09-23 entry (Mailchimp's published sending ranges).
 * The SPF ranges are those the providers published as of 2024, written down here without a live
 * lookup (this list was made offline); re-check them with e.g. `dig +short txt _netblocks.google.com`.
 * postgrey's entries were read from the installed file on 2026-05 (postgrey 1.37, Debian).
 * Host names match only a forward-confirmed PTR name (see allowlist.ts), so listing a provider's
 * domain lets through only hosts whose address and name the provider itself published.
 */

/** One category of providers: host names (suffixes), `/regex/` host patterns, and networks. */
export interface ProviderCategory {
  /** The category's name, as the `providers` option lists it. */
  readonly name: string;
  /** Why they are listed (postgrey's reason, or the source). */
  readonly why: string;
  /** Host name suffixes, `/regex/` host patterns and networks (CIDR). */
  readonly entries: readonly string[];
}

/** The shipped list, by category. */
export const PROVIDERS: readonly ProviderCategory[] = [
  {
    name: 'google',
    why: 'big pool (postgrey 2005-06-17 gmail.com, google.com, 2010-06-18 postini.com); _netblocks.google.com',
    entries: [
      'google.com',
      'proxy.gmail.com',
      'postini.com',
      '35.190.247.0/24',
      '64.233.160.0/19',
      '66.102.0.0/20',
      '66.249.80.0/20',
      '72.14.192.0/18',
      '74.125.0.0/16',
      '108.177.8.0/21',
      '108.177.96.0/19',
      '130.211.0.0/22',
      '172.217.0.0/19',
      '172.217.32.0/20',
      '172.217.128.0/19',
      '172.217.160.0/20',
      '172.217.192.0/19',
      '172.253.56.0/21',
      '172.253.112.0/20',
      '173.194.0.0/16',
      '209.85.128.0/17',
      '216.58.192.0/19',
      '216.239.32.0/19',
      '2001:4860:4000::/36',
      '2404:6800:4000::/36',
      '2607:f8b0:4000::/36',
      '2800:3f0:4000::/36',
      '2a00:1450:4000::/36',
      '2c0f:fb50:4000::/36',
    ],
  },
  {
    name: 'microsoft',
    why: 'long/no retry, large pool (postgrey 2010-06-10, 2015-07-23, 2018-01-16); spf.protection.outlook.com',
    entries: [
      'outlook.com',
      'microsoft.com',
      'bigfish.com',
      'frontbridge.com',
      'protection.outlook.de',
      '40.92.0.0/15',
      '40.107.0.0/16',
      '52.100.0.0/14',
      '104.47.0.0/17',
      '51.4.72.0/24',
      '51.5.72.0/24',
      '51.4.80.0/27',
      '51.5.80.0/27',
      '2a01:111:f400::/48',
      '2a01:111:f403::/49',
      '2a01:4180:4051:0800::/64',
      '2a01:4180:4050:0800::/64',
      '2a01:4180:4051:0400::/64',
      '2a01:4180:4050:0400::/64',
    ],
  },
  {
    name: 'amazon-ses',
    why: 'large pool (postgrey 2016-09-13, github #35 #37 #38); amazonses.com SPF',
    entries: [
      'amazonses.com',
      '54.240.0.0/18',
      '54.240.64.0/19',
      '54.240.96.0/19',
      '69.169.224.0/20',
      '23.249.208.0/20',
      '23.251.224.0/19',
      '76.223.176.0/20',
      '199.255.192.0/22',
      '199.127.232.0/22',
    ],
  },
  {
    name: 'ovh',
    why: 'large pool (postgrey 2017-05-18)',
    entries: ['mail-out.ovh.net'],
  },
  {
    name: 'facebook',
    why: 'no retry (postgrey 2008-11-07, 2016-09-13, 2017-02-03, 2018-01-12)',
    entries: [
      '/^outmail\\d+\\.sctm\\.tfbnw\\.net$/',
      'outmail.facebook.com',
      'outappmail.facebook.com',
      'mail-mail.facebook.com',
    ],
  },
  {
    name: 'mailchimp',
    why: 'large pool, unique senders (postgrey 2018-04-25, 2018-09-23)',
    entries: ['systemalerts.mailchimp.com', '205.201.128.0/20', '198.2.128.0/18', '148.105.0.0/16'],
  },
  {
    name: 'yahoo',
    why: 'big pool (postgrey 2008-07-22)',
    entries: ['yahoo.com'],
  },
  {
    name: 'bulk-senders',
    why: 'large pools (postgrey: mailgun 2022-01-22 #87, smtp2go #92, mtasv.net 2016-05-05, github 2016-11-16 #41, twitter 2017-02-09 #46, ebay 2008-07-18)',
    entries: [
      'mailgun.com',
      'mailgun.net',
      'mailgun.us',
      'smtp2go.com',
      'mtasv.net',
      'github.com',
      'github.net',
      'twitter.com',
      'ebay.com',
    ],
  },
  {
    name: 'mail-providers',
    why: 'large pools or long retry (postgrey: gmx/web.de 2014-01-29, protonmail 2019-06-25 #76, infomaniak 2022-01-22 #88, orange.fr 2013-12-18, free.fr, mail.ru 2014-12-18, rambler.ru, upcmail.net 2011-05-02, alibaba 2015-08-19)',
    entries: [
      'mout-xforward.gmx.net',
      'mout-xforward.web.de',
      'mout-xforward.kundenserver.de',
      'mout-xforward.perfora.net',
      'protonmail.ch',
      'mail.infomaniak.ch',
      '/^smtp\\d+\\.orange\\.fr$/',
      '/^smtp\\d+\\.smtpout\\.orange\\.fr$/',
      '/^(?:smtp\\w*|postfix)[0-9]+-g[0-9]+\\.free\\.fr$/',
      '/^fallback\\d+\\.mail\\.ru$/',
      '/^fallback\\d+\\.m\\.smailru\\.net$/',
      'rambler.ru',
      'upcmail.net',
      'mail.alibaba.com',
      'mail.aliyun.com',
    ],
  },
  {
    name: 'filtering-services',
    why: 'large pools (postgrey: messagelabs.com, reflexion.net 2018-09-02, barracuda.com #90, mailspamprotection.com #82)',
    entries: ['messagelabs.com', 'reflexion.net', 'barracuda.com', 'mailspamprotection.com'],
  },
];

/** Every entry of the shipped list, flat. */
export function providerEntries(categories: readonly string[] | 'all' = 'all'): string[] {
  return PROVIDERS.filter((c) => categories === 'all' || categories.includes(c.name)).flatMap((c) => [
    ...c.entries,
  ]);
}
