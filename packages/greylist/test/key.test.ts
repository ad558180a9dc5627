import {
  clientAddressKey,
  clientAllowlist,
  clientNetwork,
  normaliseSender,
  parsePostgreyWhitelist,
  providerEntries,
  recipientAllowlist,
  tripletKey,
} from '@mxguard/greylist';
import { describe, expect, it } from 'vitest';

describe('sender normalisation (postgrey do_sender_substitutions, sqlgrey deverp)', () => {
  it.each([
    // BATV, both orders postgrey knows.
    ['prvs=1234abcdef=alice@example.org', 'alice@example.org'],
    ['prvs=alice=1234abcdef@example.org', 'alice@example.org'],
    ['PRVS=0123ABCDEF=Alice@Example.ORG', 'alice@example.org'],
    // +extension (VERP through a plus address).
    ['list+bounces-alice=example.org@lists.example.net', 'list@lists.example.net'],
    // Numbers standing as words.
    ['bounce-12345-678@mailer.example.com', 'bounce-#-#@mailer.example.com'],
    ['newsletter.2024.05@example.com', 'newsletter.#.#@example.com'],
    // Letters glued to digits are not a word: kept.
    ['user42@example.com', 'user42@example.com'],
    // SRS: hash and time stamp masked, original domain and user kept.
    ['SRS0=HHH1=TT=orig.example=alice@forwarder.example', 'srs0=#=#=orig.example=alice@forwarder.example'],
    ['SRS0=zZ9x=5Q=orig.example=alice@forwarder.example', 'srs0=#=#=orig.example=alice@forwarder.example'],
    [
      'SRS1=abcd=fwd0.example==HHH=TT=orig.example=alice@fwd1.example',
      'srs1=#=fwd0.example=#=#=orig.example=alice@fwd1.example',
    ],
    // The null sender.
    ['', '<>'],
    ['<>', '<>'],
    // Angle brackets and case.
    ['<Bob@Example.COM>', 'bob@example.com'],
    // No domain: left as it is (lower case).
    ['postmaster', 'postmaster'],
  ])('%j -> %j', (input, want) => {
    expect(normaliseSender(input)).toBe(want);
  });

  it('two BATV-signed messages from one sender share a key', () => {
    const a = tripletKey('192.0.2.1', 'prvs=1123abcdef=news@example.org', 'me@example.com');
    const b = tripletKey('192.0.2.200', 'prvs=2456fedcba=news@example.org', 'me@example.com');
    expect(a).toBe(b);
  });
});

describe('client network', () => {
  it('IPv4 /24 and IPv6 /64 by default, as postgrey', () => {
    expect(clientNetwork('192.0.2.77')).toBe('192.0.2.0/24');
    expect(clientNetwork('2001:db8:1:2:3:4:5:6')).toBe('2001:db8:1:2::/64');
  });
  it('an IPv4-mapped IPv6 address is the IPv4 client', () => {
    expect(clientNetwork('::ffff:192.0.2.77')).toBe('192.0.2.0/24');
    expect(clientAddressKey('::ffff:192.0.2.77')).toBe('192.0.2.77');
  });
  it('configurable prefixes, including the full address', () => {
    expect(clientNetwork('192.0.2.77', { ipv4Prefix: 32 })).toBe('192.0.2.77/32');
    expect(clientNetwork('192.0.2.77', { ipv4Prefix: 20 })).toBe('192.0.0.0/20');
    expect(clientNetwork('2001:db8::1', { ipv6Prefix: 128 })).toBe('2001:db8::1/128');
    expect(() => clientNetwork('192.0.2.1', { ipv4Prefix: 33 })).toThrow(TypeError);
  });
  it('a non-address gives no key (never a crash)', () => {
    expect(clientNetwork('unknown')).toBeUndefined();
    expect(tripletKey('999.1.1.1', 'a@b', 'c@d')).toBeUndefined();
  });
  it('an over-long sender or recipient is hashed, so keys stay small', () => {
    const long = `${'a'.repeat(100_000)}@example.org`;
    const k = tripletKey('192.0.2.9', long, 'me@example.com');
    expect(k).toMatch(/^192\.0\.2\.0\/24\/sha1:[0-9a-f]{40}\/me@example\.com$/);
    expect(tripletKey('192.0.2.9', long, 'me@example.com')).toBe(k);
    expect(tripletKey('192.0.2.9', `b${long}`, 'me@example.com')).not.toBe(k);
  });
  it('the key is network/sender/recipient in lower case', () => {
    expect(tripletKey('192.0.2.9', 'A@B.example', '<Me@Example.COM>')).toBe(
      '192.0.2.0/24/a@b.example/me@example.com',
    );
  });
});

describe('allowlists', () => {
  const list = clientAllowlist([
    '198.51.100.7',
    '203.0.113.0/25',
    '2001:db8:aa::/48',
    '195.235.39',
    'example.net',
    '/^mail\\d+\\.example\\.org$/',
  ]);
  it('matches addresses, networks and partial addresses', () => {
    expect(list.match('198.51.100.7', undefined)).toBe('198.51.100.7');
    expect(list.match('198.51.100.8', undefined)).toBeUndefined();
    expect(list.match('203.0.113.127', undefined)).toBe('203.0.113.0/25');
    expect(list.match('203.0.113.128', undefined)).toBeUndefined();
    expect(list.match('2001:db8:aa:1::25', undefined)).toBe('2001:db8:aa::/48');
    expect(list.match('195.235.39.4', undefined)).toBe('195.235.39');
    expect(list.match('::ffff:198.51.100.7', undefined)).toBe('198.51.100.7');
  });
  it('matches host names and their subdomains, and regular expressions, on the verified name only', () => {
    expect(list.match('192.0.2.1', 'example.net')).toBe('example.net');
    expect(list.match('192.0.2.1', 'mx1.out.example.net')).toBe('example.net');
    expect(list.match('192.0.2.1', 'badexample.net')).toBeUndefined();
    expect(list.match('192.0.2.1', 'mail12.example.org')).toBe('/^mail\\d+\\.example\\.org$/');
    expect(list.match('192.0.2.1', 'mail12.example.org.evil.test')).toBeUndefined();
    expect(list.match('192.0.2.1', null)).toBeUndefined();
  });
  it('refuses an entry that is nothing', () => {
    expect(() => clientAllowlist(['not a host!'])).toThrow(/not an address/);
    expect(() => clientAllowlist(['/(unclosed/'])).toThrow(TypeError);
  });
  it('reads addresses and CIDRs as every network list does: host bits refused, v4-mapped as IPv4', () => {
    expect(() => clientAllowlist(['192.0.2.1/24'])).toThrow(/host bits set \(did you mean 192.0.2.0\/24\?\)/);
    const mapped = clientAllowlist(['::ffff:192.0.2.0/120']);
    expect(mapped.match('192.0.2.9', undefined)).toBe('::ffff:192.0.2.0/120');
    expect(mapped.match('[192.0.2.9]', undefined)).toBe('::ffff:192.0.2.0/120');
  });
  it('reads postgrey whitelist_clients format', () => {
    const entries = parsePostgreyWhitelist(
      '# comment\n\ngoogle.com\n/^smtp\\d+\\.orange\\.fr$/\n195.235.39\n51.4.72.0/24 # pool\n',
    );
    expect(entries).toEqual(['google.com', '/^smtp\\d+\\.orange\\.fr$/', '195.235.39', '51.4.72.0/24']);
    expect(clientAllowlist(entries).size).toBe(4);
  });
  it('the shipped provider list compiles and covers the documented categories', () => {
    const providers = clientAllowlist(providerEntries());
    expect(providers.match('209.85.220.41', undefined)).toBe('209.85.128.0/17'); // Google
    expect(providers.match('40.107.22.50', undefined)).toBe('40.107.0.0/16'); // Exchange Online
    expect(providers.match('192.0.2.1', 'a8-30.smtp-out.amazonses.com')).toBe('amazonses.com');
    expect(providers.match('192.0.2.1', 'mo1.mail-out.ovh.net')).toBe('mail-out.ovh.net');
    expect(providers.match('192.0.2.1', 'outmail12.sctm.tfbnw.net')).toBe(
      '/^outmail\\d+\\.sctm\\.tfbnw\\.net$/',
    );
    expect(providers.match('198.2.130.1', undefined)).toBe('198.2.128.0/18'); // Mailchimp
    expect(providers.match('192.0.2.1', 'mail.example.com')).toBeUndefined();
  });
  it('recipients: postgrey syntax', () => {
    const r = recipientAllowlist(['postmaster@', 'abuse@', 'ceo@example.com', 'lists.example.org']);
    expect(r('Postmaster@any.example')).toBe('postmaster@');
    expect(r('abuse+spam@any.example')).toBe('abuse@');
    expect(r('<ceo@example.com>')).toBe('ceo@example.com');
    expect(r('ceo@example.net')).toBeUndefined();
    expect(r('x@sub.lists.example.org')).toBe('lists.example.org');
    expect(r('postmasterx@any.example')).toBeUndefined();
  });
});
