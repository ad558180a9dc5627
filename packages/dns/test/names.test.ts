import {
  canonicalName,
  classifyListAnswer,
  isNonPublicAddress,
  joinName,
  matchesFilter,
  parseListSpec,
  ptrName,
  reversedIp,
} from '@mxguard/dns';
import { describe, expect, it } from 'vitest';

describe('parseListSpec (postscreen_dnsbl_sites syntax)', () => {
  it('reads zone, filter and weight', () => {
    const s = parseListSpec('zen.spamhaus.org=127.0.0.[2..11]*3');
    expect(s.zone).toBe('zen.spamhaus.org');
    expect(s.weight).toBe(3);
    expect(matchesFilter(s, '127.0.0.2')).toBe(true);
    expect(matchesFilter(s, '127.0.0.11')).toBe(true);
    expect(matchesFilter(s, '127.0.0.12')).toBe(false);
    expect(matchesFilter(s, '127.0.1.2')).toBe(false);
  });
  it('reads negative weights, lists and ranges combined', () => {
    const w = parseListSpec('list.dnswl.org=127.0.[0..255].[1..3]*-2');
    expect(w.weight).toBe(-2);
    expect(matchesFilter(w, '127.0.15.2')).toBe(true);
    expect(matchesFilter(w, '127.0.15.0')).toBe(false);
    const c = parseListSpec('bl.example=127.0.0.[2;4;6..8]');
    expect(['127.0.0.2', '127.0.0.4', '127.0.0.7'].every((a) => matchesFilter(c, a))).toBe(true);
    expect(['127.0.0.3', '127.0.0.5', '127.0.0.9'].some((a) => matchesFilter(c, a))).toBe(false);
  });
  it('defaults: no filter matches any answer, weight 1', () => {
    const s = parseListSpec('BL.Example.');
    expect(s).toMatchObject({ zone: 'bl.example', weight: 1 });
    expect(s.filter).toBeUndefined();
    expect(parseListSpec('bl.example=127.0.0.2').weight).toBe(1);
    expect(parseListSpec('bl.example*5').weight).toBe(5);
  });
  it.each([
    ['', /not a DNS zone/],
    ['nodot', /not a DNS zone/],
    ['bad..zone', /not a DNS zone/],
    ['bl.example=', /empty filter/],
    ['bl.example=127.0.0', /four octet/],
    ['bl.example=127.0.0.256', /not an octet/],
    ['bl.example=127.0.0.[5..2]', /empty/],
    ['bl.example=127.0.0.[2..3', /unbalanced/],
    ['bl.example=127.0.0.[]', /empty "\[\]"/],
    ['bl.example*x', /weight/],
    ['bl.example*1.5', /weight/],
  ])('rejects %j with a clear error', (spec, why) => {
    expect(() => parseListSpec(spec)).toThrow(why);
    expect(() => parseListSpec(spec)).toThrow(/DNS list/);
  });
});

describe('names built from client input', () => {
  it('canonicalises valid host names and refuses the rest', () => {
    expect(canonicalName('Mail.Example.COM.')).toBe('mail.example.com');
    expect(canonicalName('_dmarc.example.com')).toBe('_dmarc.example.com');
    for (const bad of [
      '',
      '.',
      'a..b',
      '.a.b',
      'a b.c',
      `${'a'.repeat(64)}.com`,
      'x\u00e9.com',
      'a.-b.c',
      'a/b.c',
      'a.b..',
    ]) {
      expect(canonicalName(bad), bad).toBeUndefined();
    }
    expect(canonicalName(`${'a.'.repeat(126)}b`)).toHaveLength(253);
    expect(canonicalName(`${'a.'.repeat(126)}bc`)).toBeUndefined(); // 254 characters
  });
  it('joinName refuses a name that would overflow 253 characters once joined', () => {
    const long = `${'abcdefghi.'.repeat(24)}example`; // 247 characters
    expect(canonicalName(long)).toBe(long);
    expect(joinName(long, 'zen.spamhaus.org')).toBeUndefined();
    expect(joinName('example.com', 'dbl.example')).toBe('example.com.dbl.example');
  });
  it('reverses IPv4 octets and IPv6 nibbles (RFC 5782 2.1, 2.4)', () => {
    expect(reversedIp('192.0.2.99')).toBe('99.2.0.192');
    expect(reversedIp('::ffff:192.0.2.99')).toBe('99.2.0.192');
    expect(reversedIp('2001:db8:1:2:3:4:567:89ab')).toBe(
      'b.a.9.8.7.6.5.0.4.0.0.0.3.0.0.0.2.0.0.0.1.0.0.0.8.b.d.0.1.0.0.2',
    );
    expect(reversedIp('2001:db8::1')?.split('.')).toHaveLength(32);
    expect(reversedIp('not an ip')).toBeUndefined();
    expect(reversedIp('127.1')).toBeUndefined();
    expect(ptrName('192.0.2.1')).toBe('1.2.0.192.in-addr.arpa');
    expect(ptrName('2001:db8::1')?.endsWith('.ip6.arpa')).toBe(true);
  });
  it('classifies error answers of DNS lists', () => {
    expect(classifyListAnswer('127.0.0.2')).toBe('listing');
    expect(classifyListAnswer('127.255.255.254')).toBe('error');
    expect(classifyListAnswer('127.255.255.252')).toBe('error');
    expect(classifyListAnswer('127.0.0.255')).toBe('error');
    expect(classifyListAnswer('192.0.2.1')).toBe('error');
    expect(classifyListAnswer('10.0.0.2')).toBe('error');
  });
  it('knows which MX addresses are not public', () => {
    expect(isNonPublicAddress('127.0.0.1')).toBe(true);
    expect(isNonPublicAddress('10.1.2.3')).toBe(true);
    expect(isNonPublicAddress('192.168.1.1')).toBe(true);
    expect(isNonPublicAddress('::1')).toBe(true);
    expect(isNonPublicAddress('fd00::1')).toBe(true);
    expect(isNonPublicAddress('8.8.8.8')).toBe(false);
    expect(isNonPublicAddress('2a00:1450::1')).toBe(false);
  });
});
