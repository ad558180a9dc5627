import { loadOptionalPeer } from '@mxguard/core';
import { describe, expect, it } from 'vitest';

describe('loadOptionalPeer', () => {
  it('loads an installed package from the caller’s point of view', () => {
    const tldts = loadOptionalPeer<typeof import('tldts')>('tldts', 'a test', import.meta.url);
    expect(tldts.getDomain('mail.example.co.uk')).toBe('example.co.uk');
  });
  it('names the missing package, the feature and the install command', () => {
    expect(() =>
      loadOptionalPeer('mxguard-no-such-package', 'redisStore() of a test', import.meta.url),
    ).toThrow(
      'redisStore() of a test needs the package "mxguard-no-such-package", an optional peer dependency that is not installed: npm install mxguard-no-such-package',
    );
  });
});
