import { ipNetwork, parseClientIp, parseIp } from '@mxguard/core';
import { describe, expect, it } from 'vitest';

describe('parseClientIp: the one address parser of every package', () => {
  it('drops brackets, the IPv6: tag, a zone index and spaces, then reads as parseIp', () => {
    expect(parseClientIp(' [192.0.2.1] ')?.address).toBe('192.0.2.1');
    expect(parseClientIp('[IPv6:2001:DB8:0:0::1]')?.address).toBe('2001:db8::1');
    expect(parseClientIp('fe80::1%eth0')?.address).toBe('fe80::1');
    expect(parseClientIp('::ffff:198.51.100.9')).toMatchObject({ address: '198.51.100.9', family: 4 });
  });
  it('refuses what is not a dotted quad or IPv6, as parseIp does', () => {
    for (const s of ['127.1', '0x7f.0.0.1', '256.1.1.1', 'mail.example.com', '', '[]', 'IPv6:', '1.2.3.4/24'])
      expect(parseClientIp(s), s).toBeNull();
    expect(parseClientIp('1'.repeat(65))).toBeNull();
    expect(parseClientIp(42 as unknown as string)).toBeNull();
    expect(parseIp('[192.0.2.1]')).toBeNull(); // parseIp itself stays strict
  });
});

describe('ipNetwork', () => {
  it('masks to the prefix of the family, IPv4-mapped counting as IPv4', () => {
    expect(ipNetwork('192.0.2.77', 24, 64)).toBe('192.0.2.0/24');
    expect(ipNetwork('::ffff:192.0.2.77', 20, 64)).toBe('192.0.0.0/20');
    expect(ipNetwork('2001:db8:1:2:3:4:5:6', 24, 48)).toBe('2001:db8:1::/48');
    expect(ipNetwork('10.1.2.3', 0, 0)).toBe('0.0.0.0/0');
    const parsed = parseClientIp('2001:db8::1');
    expect(parsed && ipNetwork(parsed, 24, 128)).toBe('2001:db8::1/128');
  });
  it('is undefined for a non-address and a TypeError for a bad prefix', () => {
    expect(ipNetwork('unknown', 24, 64)).toBeUndefined();
    expect(() => ipNetwork('192.0.2.1', 33, 64)).toThrow(/ipv4Prefix 33/);
    expect(() => ipNetwork('192.0.2.1', 24, 1.5)).toThrow(/ipv6Prefix 1.5/);
  });
});
