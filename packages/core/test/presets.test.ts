import {
  buildPolicy,
  type Check,
  ConfigError,
  defer,
  next,
  PROVIDED_CHECKS,
  pureRegistry,
  RECOMMENDED,
  recommended,
  reply,
  type Session,
} from '@mxguard/core';
import { describe, expect, it } from 'vitest';

const at = (extra: Partial<Session> = {}): Session => ({
  clientAddress: '203.0.113.9',
  helo: 'mail.example.net',
  rdns: { names: ['mail.example.net'], verified: 'mail.example.net' },
  mailFrom: 'a@example.net',
  rcptTo: 'b@example.com',
  stage: 'rcpt',
  ...extra,
});

/** A stand-in greylist that defers whenever an earlier link doubted the client. */
const fakeGreylist: Check = {
  name: 'greylist',
  stage: 'rcpt',
  run: (_s, ctx) =>
    ctx.findings.some((f) => f.doubt)
      ? defer(reply(451, '4.7.1', 'Greylisted'), 'doubted')
      : next('no doubt'),
};

/** The checks of the preset that need a package with I/O (DNS, stores): core alone omits them. */
const IO = [
  'reputation',
  'sender-domain',
  'recipient-domain',
  'address-guessing',
  'dnswl',
  'dnsbl',
  'rhsbl',
  'fcrdns',
  'callout',
  'greylist',
];
const NO_GREYLIST = IO.filter((n) => n !== 'greylist');

describe('recommended()', () => {
  it('refuses to leave out a check silently: one with no provider must be named in omit', () => {
    expect(() => recommended({ ourDomains: ['example.com'] })).toThrow(ConfigError);
    expect(() => recommended({ ourDomains: ['example.com'] })).toThrow(
      /config\.provided: no provider for "reputation", "sender-domain", .*"greylist" of the recommended list/,
    );
    expect(() => recommended({ omit: NO_GREYLIST })).toThrow(/no provider for "greylist"/);
    expect(() => recommended({ omit: [...IO, 'dnsbll'] })).toThrow(
      /config\.omit\.dnsbll: not a check of the recommended list; did you mean "dnsbl"\?/,
    );
    expect(() => recommended({ omit: IO, provided: { greylist: fakeGreylist } })).toThrow(
      /"greylist" is both provided and omitted/,
    );
    // With an explicit chain the preset's list does not apply.
    expect(recommended({ checks: ['relay'] }).chain.links).toHaveLength(1);
  });

  it('lists what was omitted, with the reason, and refuses options or warn for it', () => {
    const p = recommended({
      omit: { ...Object.fromEntries(IO.map((n) => [n, 'omitted'])), dnsbl: 'no resolver' },
    });
    expect(p.off).toContainEqual({ name: 'dnsbl', why: 'no resolver' });
    expect(() => recommended({ omit: IO, options: { dnsbl: { threshold: 2 } } })).toThrow(
      /config\.options\.dnsbl: "dnsbl" is off \(omitted\), so it is not in the chain/,
    );
    expect(() => recommended({ omit: IO, warn: ['greylist'] })).toThrow(
      /config\.warn\[0\]: "greylist" is off/,
    );
  });

  it('keeps the documented order and leaves out what is omitted', () => {
    const p = recommended({ omit: IO });
    const names = p.chain.links.map((l) => l.check.name);
    const order = RECOMMENDED.map((c) => c.name).filter((n) => names.includes(n));
    expect(names).toEqual(order);
    expect(names.slice(0, 3)).toEqual(['trusted', 'relay', 'helo-required']);
    expect(p.skipped).toEqual(
      expect.arrayContaining(['dnsbl', 'sender-domain', 'greylist', 'callout', 'reputation']),
    );
    expect(p.site.ourDomains).toEqual(['example.com']);
  });

  it('a clean session passes; a forged HELO, relaying and a non-FQDN sender are refused', async () => {
    const c = recommended({ ourHosts: ['mx.example.com'], omit: IO }).chain;
    expect((await c.evaluate(at())).action).toBe('next');
    const forged = await c.evaluate(at({ helo: 'mx.example.com' }));
    expect([forged.action, forged.check]).toEqual(['reject', 'helo-claims-us']);
    const relay = await c.evaluate(at({ rcptTo: 'x@elsewhere.org' }));
    expect([relay.action, relay.check, relay.reply?.code]).toEqual(['reject', 'relay', 554]);
    const sender = await c.evaluate(at({ mailFrom: 'a@localhost' }));
    expect([sender.action, sender.check]).toEqual(['reject', 'sender-fqdn']);
  });

  it('our networks and authenticated users are accepted before content checks (permit_mynetworks)', async () => {
    const c = recommended({ ourNetworks: ['192.0.2.0/24'], omit: IO }).chain;
    const d = await c.evaluate(at({ clientAddress: '192.0.2.5', helo: 'pc', rcptTo: 'x@elsewhere.org' }));
    expect([d.action, d.check]).toEqual(['accept', 'relay']);
    const auth = await c.evaluate(at({ authUser: 'alice', helo: 'pc', rcptTo: 'x@elsewhere.org' }));
    expect(auth.action).toBe('accept');
  });

  it('trusted forwarders are never checked, so we never refuse what they relay', async () => {
    const c = recommended({ trustedForwarders: ['198.51.100.0/24'], omit: IO }).chain;
    const d = await c.evaluate(at({ clientAddress: '198.51.100.9', helo: 'pc', mailFrom: 'a@localhost' }));
    expect([d.action, d.check]).toEqual(['accept', 'trusted']);
  });

  it('with a greylist, rDNS doubts send the client to it (selective greylisting), never a hard refusal', async () => {
    const c = recommended({ provided: { greylist: fakeGreylist }, omit: NO_GREYLIST }).chain;
    const dynamic = await c.evaluate(
      at({
        rdns: { names: ['c-73-12-34-56.hsd1.ca.comcast.net'], verified: 'c-73-12-34-56.hsd1.ca.comcast.net' },
        clientAddress: '73.12.34.56',
      }),
    );
    expect([dynamic.action, dynamic.check]).toEqual(['defer', 'greylist']);
    const none = await c.evaluate(at({ rdns: { names: [] } }));
    expect([none.action, none.check]).toEqual(['defer', 'greylist']);
    expect((await c.evaluate(at())).action).toBe('next');
  });

  it('without a greylist the rDNS checks keep their own default (defer), so a doubt is never dropped', async () => {
    const c = recommended({ omit: IO }).chain;
    const none = await c.evaluate(at({ rdns: { names: [] } }));
    expect([none.action, none.check]).toEqual(['defer', 'rdns-missing']);
  });

  it('helo-fqdn and helo-bare-ip only doubt in the preset: a single-label or bare-IP HELO is not refused', async () => {
    const p = recommended({ omit: IO });
    for (const helo of ['tater', 'nas1', '192.168.1.20']) {
      const d = await p.chain.evaluate(at({ helo, rdns: { names: ['mail.example.net'] } }));
      expect(d.action, helo).not.toBe('reject');
      expect(
        d.findings.some((f) => f.doubt && f.check.startsWith('helo-')),
        helo,
      ).toBe(true);
    }
  });

  it('user options for a preset check win over the preset, and warn names run in warn mode', async () => {
    const p = recommended({
      options: { 'rdns-missing': { action: 'score' }, 'helo-fqdn': { action: 'reject' } },
      warn: ['helo-fqdn'],
      omit: IO,
    });
    const none = await p.chain.evaluate(at({ rdns: { names: [] }, helo: 'pc' }));
    expect(none.action).toBe('next');
    expect(none.trace.find((s) => s.check === 'helo-fqdn')).toMatchObject({ warn: true, action: 'reject' });
  });
});

describe('buildPolicy()', () => {
  it('names the place of every config error', () => {
    expect(() => buildPolicy({ checks: ['nope'] }, pureRegistry)).toThrow(ConfigError);
    expect(() => buildPolicy({ checks: ['nope'] }, pureRegistry)).toThrow(
      /checks\[0\]: unknown check "nope"/,
    );
    expect(() => buildPolicy({ checks: [{ name: 'helo-fqdn', action: 'explode' }] }, pureRegistry)).toThrow(
      /checks\[0\]/,
    );
    expect(() => buildPolicy({ checks: [42 as never] }, pureRegistry)).toThrow(
      /checks\[0\]: must be a check name/,
    );
    expect(() => buildPolicy({ checks: ['helo-fqdn', 'helo-fqdn'] }, pureRegistry)).toThrow(/twice/);
    expect(() => buildPolicy({ ourNetworks: [1] as never }, pureRegistry)).toThrow(/ourNetworks/);
    expect(() => buildPolicy([] as never, pureRegistry)).toThrow(ConfigError);
  });
});

describe('weigh from a config file', () => {
  const scoring = {
    checks: [
      { name: 'rdns-missing', action: 'score', score: 2 },
      { name: 'rdns-dynamic', action: 'score', score: 4 },
      { name: 'helo-fqdn', action: 'score' },
      { name: 'weigh', reject: 5, defer: 2 },
    ],
  };

  it('sums the scores of the links before it against its reject and defer thresholds', async () => {
    const c = buildPolicy(scoring, pureRegistry).chain;
    expect((await c.evaluate(at())).action).toBe('next');
    const noPtr = await c.evaluate(at({ rdns: { names: [] } }));
    expect([noPtr.action, noPtr.check, noPtr.reply?.code, noPtr.reply?.enhanced]).toEqual([
      'defer',
      'weigh',
      450,
      '4.7.1',
    ]);
    expect(noPtr.reason).toMatch(/score 2 .*rdns-missing:no-ptr=2/);
    const both = await c.evaluate(
      at({
        clientAddress: '73.12.34.56',
        helo: 'pc',
        rdns: { names: ['c-73-12-34-56.hsd1.ca.comcast.net'] },
      }),
    );
    expect([both.action, both.check, both.reply?.code]).toEqual(['reject', 'weigh', 554]);
    expect(both.reason).toMatch(/^score 5 .*rdns-dynamic:dynamic=4.*helo-fqdn/);
  });

  it('a weigh with "stage": "data" sums the RCPT-time points passed in with the DATA-time ones', async () => {
    const headerScore: Check = {
      name: 'header-points',
      stage: 'data',
      readsHeaders: true,
      maxScore: 1,
      run: (s) =>
        next('read', s.headers?.includes('X-Bad') ? [{ check: 'header-points', tag: 'bad', score: 1 }] : []),
    };
    const c = buildPolicy(
      { checks: [...scoring.checks, 'header-points', { name: 'weigh', reject: 5, stage: 'data' }] },
      { ...pureRegistry, 'header-points': () => headerScore },
    ).chain;
    const rcpt = await c.evaluate(at({ rdns: { names: ['c-73-12-34-56.hsd1.ca.comcast.net'] } }));
    expect(rcpt.action).toBe('defer');
    const dynamicOnly = await c.evaluate(
      at({ clientAddress: '73.12.34.56', rdns: { names: ['c-73-12-34-56.hsd1.ca.comcast.net'] } }),
    );
    expect([dynamicOnly.action, dynamicOnly.check]).toEqual(['defer', 'weigh']);
    const carried = dynamicOnly.findings.filter((f) => f.score);
    const clean = await c.evaluate(at({ stage: 'data', headers: 'Subject: hi\r\n' }), carried);
    expect(clean.action).toBe('next');
    expect(clean.trace.map((t) => t.check)).toEqual(['header-points', 'weigh-data']);
    const tipped = await c.evaluate(at({ stage: 'data', headers: 'X-Bad: 1\r\n' }), carried);
    expect([tipped.action, tipped.check, tipped.reply?.code]).toEqual(['reject', 'weigh-data', 554]);
    expect(tipped.reason).toMatch(/^score 5 .*rdns-dynamic:dynamic=4.*header-points:bad=1/);
    expect(() => buildPolicy({ checks: [{ name: 'weigh', reject: 5, stage: 'eom' }] }, pureRegistry)).toThrow(
      /config\.checks\[0\]\.stage: must be one of "connect", "helo", "mail", "rcpt", "data"; got "eom"/,
    );
  });

  it('refuses a weigh without a reject threshold, or with an unknown option', () => {
    expect(() => buildPolicy({ checks: [{ name: 'weigh' }] }, pureRegistry)).toThrow(/checks\[0\].*reject/);
    expect(() => buildPolicy({ checks: [{ name: 'weigh', reject: 5, defer: 9 }] }, pureRegistry)).toThrow(
      /below/,
    );
    expect(() => buildPolicy({ checks: [{ name: 'weigh', reject: 5, rejct: 1 }] }, pureRegistry)).toThrow(
      /config\.checks\[0\]\.rejct: unknown key; did you mean "reject"\?/,
    );
  });
});

describe('PROVIDED_CHECKS', () => {
  it('names exactly the recommended checks that need DNS, a store or a callout', () => {
    expect([...PROVIDED_CHECKS].sort()).toEqual(
      [
        'address-guessing',
        'callout',
        'dnsbl',
        'dnswl',
        'fcrdns',
        'greylist',
        'recipient-domain',
        'reputation',
        'rhsbl',
        'sender-domain',
      ].sort(),
    );
    // With them omitted, the preset builds from core alone.
    expect(() => recommended({ ourDomains: ['example.com'], omit: PROVIDED_CHECKS })).not.toThrow();
  });
});
