import type { CheckContext, Logger, Session } from '@mxguard/core';
import { bindFactories, buildPolicy, ConfigError, ManualClock, site } from '@mxguard/core';
import {
  dnsbl,
  dnsFactories,
  dnsSettingsFromConfig,
  dnswl,
  FakeResolver,
  fcrdns,
  heloResolves,
  ListHealth,
  lookupRdns,
  parseListSpec,
  recipientDomain,
  rhsbl,
  senderDomain,
} from '@mxguard/dns';
import { describe, expect, it } from 'vitest';

function recorder(): Logger & { lines: { level: string; obj: object; msg?: string }[] } {
  const lines: { level: string; obj: object; msg?: string }[] = [];
  const at = (level: string) => (obj: object, msg?: string) => lines.push({ level, obj, msg });
  return { lines, debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error') };
}

function ctx(clock = new ManualClock(1_000_000), log: Logger = recorder()): CheckContext {
  return { clock, log, findings: [] };
}

const s = (over: Partial<Session> = {}): Session => ({ clientAddress: '192.0.2.99', stage: 'rcpt', ...over });
const ZEN = parseListSpec('zen.example=127.0.0.[2..11]*3');
const WL = parseListSpec('wl.example=127.0.[0..255].[1..3]*-2');
const SMALL = parseListSpec('small.example*1');

describe('dnsbl', () => {
  it('rejects a listed client as reject_rbl_client, with the TXT reason', async () => {
    const dns = new FakeResolver({
      '99.2.0.192.zen.example': { A: ['127.0.0.2'], TXT: ['Listed, see https://zen.example/q?192.0.2.99'] },
    });
    const v = await dnsbl(dns, [ZEN], { threshold: 3, health: false }).run(s(), ctx());
    expect(v.action).toBe('reject');
    if (v.action !== 'reject') return;
    expect(v.reply).toEqual({
      code: 554,
      enhanced: '5.7.1',
      text: 'Service unavailable; Client host [192.0.2.99] blocked using zen.example; Listed, see https://zen.example/q?192.0.2.99',
    });
    expect(v.findings).toEqual([{ check: 'dnsbl', tag: 'listed:zen.example', score: 3 }]);
  });

  it('sums weights as postscreen: an allowlisting offsets a listing', async () => {
    const dns = new FakeResolver({
      '99.2.0.192.zen.example': { A: ['127.0.0.4'] },
      '99.2.0.192.wl.example': { A: ['127.0.10.2'] },
    });
    const v = await dnsbl(dns, [ZEN, WL], { threshold: 3, health: false }).run(s(), ctx());
    expect(v.action).toBe('next');
    expect(v.findings?.map((f) => f.score)).toEqual([3, -2]);
  });

  it('queries all lists in parallel', async () => {
    let open!: () => void;
    const dns = new FakeResolver({}).hold(new Promise<void>((r) => (open = r)));
    const p = dnsbl(dns, [ZEN, WL, SMALL], { health: false }).run(s(), ctx());
    await new Promise((r) => setTimeout(r, 0));
    expect(dns.calls.map((c) => c.name).sort()).toEqual([
      '99.2.0.192.small.example',
      '99.2.0.192.wl.example',
      '99.2.0.192.zen.example',
    ]);
    open();
    expect((await p).action).toBe('next');
  });

  it('never takes an error answer for a listing, and logs it as an error of the list', async () => {
    for (const answer of ['127.255.255.254', '127.255.255.255', '127.0.0.255', '192.0.2.1']) {
      const dns = new FakeResolver({ '99.2.0.192.small.example': { A: [answer] } });
      const log = recorder();
      const v = await dnsbl(dns, [SMALL], { health: false }).run(s(), ctx(undefined, log));
      expect(v.action, answer).toBe('next');
      expect(v.findings ?? []).toEqual([]);
      expect(log.lines.some((l) => l.level === 'error' && JSON.stringify(l.obj).includes(answer))).toBe(true);
    }
  });

  it('an answer outside the filter is not a listing', async () => {
    const dns = new FakeResolver({ '99.2.0.192.zen.example': { A: ['127.0.0.20'] } });
    expect((await dnsbl(dns, [ZEN], { health: false }).run(s(), ctx())).action).toBe('next');
  });

  it('a temporary failure is no opinion, never a 5xx', async () => {
    const dns = new FakeResolver({}).fail('99.2.0.192.zen.example', 'A');
    const v = await dnsbl(dns, [ZEN], { health: false }).run(s(), ctx());
    expect(v.action).toBe('next');
    expect(v.reason).toContain('temporary');
  });

  it('queries IPv6 clients by 32 reversed nibbles', async () => {
    const name = `1.${'0.'.repeat(23)}8.b.d.0.1.0.0.2.small.example`;
    const dns = new FakeResolver({ [name]: { A: ['127.0.0.2'] } });
    const v = await dnsbl(dns, [SMALL], { health: false }).run(s({ clientAddress: '2001:db8::1' }), ctx());
    expect(dns.calls[0]?.name).toBe(name);
    expect(v.action).toBe('reject');
  });

  it('score and greylist actions leave findings, no verdict', async () => {
    const dns = new FakeResolver({ '99.2.0.192.small.example': { A: ['127.0.0.2'] } });
    const g = await dnsbl(dns, [SMALL], { health: false, action: 'greylist' }).run(s(), ctx());
    expect(g).toMatchObject({
      action: 'next',
      findings: [{ tag: 'listed:small.example', doubt: true, score: 1 }],
    });
    const d = await dnsbl(dns, [SMALL], { health: false, action: 'defer' }).run(s(), ctx());
    // core's soften() decides the 4xx form of 554; a 4xx with the same subject is what matters.
    expect(d.action === 'defer' && Math.floor(d.reply.code / 100)).toBe(4);
    expect(d.action === 'defer' && d.reply.enhanced).toBe('4.7.1');
  });
});

describe('RFC 5782 health probes', () => {
  it('disables a list that lists 127.0.0.1, loudly, until it stops', async () => {
    const dns = new FakeResolver({
      '1.0.0.127.bad.example': { A: ['127.0.0.2'] },
      '2.0.0.127.bad.example': { A: ['127.0.0.2'] },
      '99.2.0.192.bad.example': { A: ['127.0.0.2'] },
    });
    const clock = new ManualClock(0);
    const log = recorder();
    const health = new ListHealth({ interval: 600_000, retryInterval: 60_000 });
    const check = dnsbl(dns, [parseListSpec('bad.example')], { health });
    const v = await check.run(s(), ctx(clock, log));
    expect(v.action).toBe('next');
    expect(v.reason).toContain('bad.example:disabled');
    expect(log.lines.some((l) => l.level === 'error' && l.msg?.includes('disabled'))).toBe(true);
    // Still broken a minute later: still disabled, re-probed on the injected clock.
    clock.advance(30_000);
    expect((await check.run(s(), ctx(clock, log))).action).toBe('next');
    expect(dns.count('1.0.0.127.bad.example', 'A')).toBe(1);
    // The operator fixes it: after the retry interval the probe passes and the list counts again.
    dns.fail('1.0.0.127.bad.example', 'A', 'notfound');
    clock.advance(60_000);
    expect((await check.run(s(), ctx(clock, log))).action).toBe('reject');
    expect(dns.count('1.0.0.127.bad.example', 'A')).toBe(2);
  });

  it('probes the IPv6 side with ::FFFF:7F00:1 and ::FFFF:7F00:2 as nibbles, apart from the IPv4 side', async () => {
    const v6 = (last: string) => `${last}.0.0.0.0.0.f.7.f.f.f.f${'.0'.repeat(20)}.mixed.example`;
    // Broken for IPv6 only: it answers for ::FFFF:7F00:1. Healthy for IPv4.
    const dns = new FakeResolver({
      [v6('1')]: { A: ['127.0.0.2'] },
      [v6('2')]: { A: ['127.0.0.2'] },
      '2.0.0.127.mixed.example': { A: ['127.0.0.2'] },
      '99.2.0.192.mixed.example': { A: ['127.0.0.2'] },
      [`1${'.0'.repeat(23)}.8.b.d.0.1.0.0.2.mixed.example`]: { A: ['127.0.0.2'] },
    });
    const log = recorder();
    const health = new ListHealth();
    const check = dnsbl(dns, [parseListSpec('mixed.example')], { health });
    const six = await check.run(s({ clientAddress: '2001:db8::1' }), ctx(undefined, log));
    expect(six.action).toBe('next');
    expect(six.reason).toContain('mixed.example:disabled');
    expect(health.last('mixed.example', 'ip6')).toMatchObject({ kind: 'ip6', listsEverything: true });
    expect(health.last('mixed.example', 'ip6')?.detail).toContain('::FFFF:7F00:1');
    expect(log.lines.some((l) => l.level === 'error' && JSON.stringify(l.obj).includes('ip6'))).toBe(true);
    // The IPv4 side answers 127.0.0.2 and not 127.0.0.1: still used for IPv4 clients.
    expect((await check.run(s(), ctx(undefined, log))).action).toBe('reject');
    expect(health.last('mixed.example', 'ip')).toMatchObject({
      listsEverything: false,
      missingTestEntry: false,
    });
    // A v4-mapped client is an IPv4 client: the IPv4 side decides.
    expect((await check.run(s({ clientAddress: '::ffff:192.0.2.99' }), ctx(undefined, log))).action).toBe(
      'reject',
    );
  });

  it('reports an IPv6 list that does not list ::FFFF:7F00:2, and keeps it', async () => {
    const dns = new FakeResolver({
      [`1${'.0'.repeat(23)}.8.b.d.0.1.0.0.2.quiet6.example`]: { A: ['127.0.0.2'] },
    });
    const log = recorder();
    const v = await dnsbl(dns, [parseListSpec('quiet6.example')], { health: new ListHealth() }).run(
      s({ clientAddress: '2001:db8::1' }),
      ctx(undefined, log),
    );
    expect(v.action).toBe('reject');
    expect(log.lines.some((l) => l.level === 'warn' && JSON.stringify(l.obj).includes('::FFFF:7F00:2'))).toBe(
      true,
    );
  });

  it('reports a list that does not list 127.0.0.2, and keeps it', async () => {
    const dns = new FakeResolver({ '99.2.0.192.quiet.example': { A: ['127.0.0.2'] } });
    const log = recorder();
    const v = await dnsbl(dns, [parseListSpec('quiet.example')], { health: new ListHealth() }).run(
      s(),
      ctx(undefined, log),
    );
    expect(v.action).toBe('reject');
    expect(log.lines.some((l) => l.level === 'warn' && JSON.stringify(l.obj).includes('127.0.0.2'))).toBe(
      true,
    );
  });
});

describe('dnswl', () => {
  it('accepts an allowlisted client (permit_dnswl_client); an error code is no opinion', async () => {
    const dns = new FakeResolver({
      '99.2.0.192.wl.example': { A: ['127.0.10.3'] },
      '98.2.0.192.wl.example': { A: ['127.0.0.255'] },
    });
    expect((await dnswl(dns, [WL], { health: false }).run(s(), ctx())).action).toBe('accept');
    expect(
      (await dnswl(dns, [WL], { health: false }).run(s({ clientAddress: '192.0.2.98' }), ctx())).action,
    ).toBe('next');
    const scored = await dnswl(dns, [WL], { health: false, action: 'score' }).run(s(), ctx());
    expect(scored).toMatchObject({
      action: 'next',
      findings: [{ tag: 'allowlisted:wl.example', score: -2 }],
    });
  });
});

describe('rhsbl', () => {
  const DBL = parseListSpec('dbl.example=127.0.1.[2..99]');
  it('looks up the HELO name, sender domain and verified PTR name', async () => {
    const dns = new FakeResolver({
      '192.0.2.99': { PTR: ['mail.ptr.example'] },
      'mail.ptr.example': { A: ['192.0.2.99'] },
      'bad-sender.example.dbl.example': { A: ['127.0.1.2'], TXT: ['spam domain'] },
    });
    const v = await rhsbl(dns, [DBL], { health: false }).run(
      s({ helo: 'helo.example', mailFrom: 'x@Bad-Sender.example' }),
      ctx(),
    );
    expect(v.action).toBe('reject');
    if (v.action === 'reject') {
      expect(v.reply.text).toBe(
        'Service unavailable; Sender address [bad-sender.example] blocked using dbl.example; spam domain',
      );
    }
    const names = dns.calls.filter((c) => c.type === 'A').map((c) => c.name);
    expect(names).toContain('helo.example.dbl.example');
    expect(names).toContain('mail.ptr.example.dbl.example');
  });
  it('sends no query for an invalid or injected HELO name', async () => {
    const dns = new FakeResolver({});
    for (const helo of [
      'evil..example',
      'a b.example',
      `${'x'.repeat(64)}.example`,
      '[192.0.2.1]',
      'localhost',
      '1.2.3.4',
    ]) {
      const v = await rhsbl(dns, [DBL], { health: false, targets: ['helo'] }).run(s({ helo }), ctx());
      expect(v.action, helo).toBe('next');
    }
    expect(dns.calls).toEqual([]);
  });
  it('does not use an unconfirmed PTR name', async () => {
    const dns = new FakeResolver({
      '192.0.2.99': { PTR: ['forged.example'] },
      'forged.example.dbl.example': { A: ['127.0.1.2'] },
    });
    const v = await rhsbl(dns, [DBL], { health: false, targets: ['ptr'] }).run(s(), ctx());
    expect(v.action).toBe('next');
    expect(dns.count('forged.example.dbl.example', 'A')).toBe(0);
  });
});

describe('reverse DNS and fcrdns', () => {
  it('confirms the first PTR name whose A includes the client, checking names in parallel', async () => {
    const dns = new FakeResolver({
      '192.0.2.99': { PTR: ['a.example', 'b.example', 'c.example'] },
      'a.example': { A: ['192.0.2.1'] },
      'b.example': { A: ['192.0.2.99'] },
      'c.example': { A: ['192.0.2.99'] },
    });
    expect(await lookupRdns(dns, '192.0.2.99')).toEqual({
      names: ['a.example', 'b.example', 'c.example'],
      verified: 'b.example',
    });
    expect(await lookupRdns(dns, '192.0.2.1')).toEqual({ names: [], verified: null });
    dns.fail('192.0.2.5', 'PTR');
    expect(await lookupRdns(dns, '192.0.2.5')).toEqual({ names: [], error: 'temporary' });
  });
  it('checks at most 5 PTR names', async () => {
    const names = Array.from({ length: 20 }, (_, i) => `h${i}.example`);
    const dns = new FakeResolver({ '192.0.2.99': { PTR: names } });
    await lookupRdns(dns, '192.0.2.99');
    expect(dns.calls.filter((c) => c.type === 'A')).toHaveLength(5);
  });
  it('fcrdns: a doubt by default, never a reject; temporary is no opinion', async () => {
    const dns = new FakeResolver({
      '192.0.2.99': { PTR: ['x.example', 'y.example'] },
      'x.example': { A: ['192.0.2.1'] },
    });
    const v = await fcrdns(dns).run(s(), ctx());
    expect(v).toMatchObject({
      action: 'next',
      findings: [{ check: 'fcrdns', tag: 'not-fcrdns', doubt: true }],
    });
    expect(v.reason).toContain('2 PTR names');
    const r = await fcrdns(dns, { action: 'reject' }).run(s(), ctx());
    expect(r.action === 'reject' && r.reply).toMatchObject({ code: 550, enhanced: '5.7.1' });
    const t = await fcrdns(dns).run(s({ rdns: { names: [], error: 'temporary' } }), ctx());
    expect(t.action).toBe('next');
    expect(t.findings).toBeUndefined();
  });
});

describe('helo-resolves (reject_unknown_helo_hostname)', () => {
  const dns = new FakeResolver({
    'a.example': { A: ['192.0.2.1'] },
    'mxonly.example': { MX: [{ priority: 10, exchange: 'mx.example' }] },
    'nullmx.example': { MX: [{ priority: 0, exchange: '' }] },
    'nodata.example': { TXT: ['x'] },
  })
    .fail('down.example', 'A')
    .fail('down.example', 'AAAA')
    .fail('down.example', 'MX');
  const run = (helo: string, o = {}) => heloResolves(dns, o).run(s({ helo }), ctx());
  it('passes names with an address, an MX, or a null MX', async () => {
    for (const h of ['a.example', 'mxonly.example', 'nullmx.example'])
      expect((await run(h)).action, h).toBe('next');
  });
  it('defers an unknown name 450 4.7.1 by default, 550 5.7.1 when configured', async () => {
    const v = await run('nodata.example');
    expect(v.action === 'defer' && v.reply).toEqual({
      code: 450,
      enhanced: '4.7.1',
      text: '<nodata.example>: Helo command rejected: Host not found',
    });
    const r = await run('nx.example', { rejectCode: 550 });
    expect(r.action === 'reject' && r.reply.code).toBe(550);
    expect(dns.count('nx.example', 'MX')).toBe(0); // NXDOMAIN: no MX query
  });
  it('a temporary failure defers if permit, never rejects', async () => {
    const v = await run('down.example', { rejectCode: 550 });
    expect(v).toMatchObject({ action: 'defer', ifPermit: true, reply: { code: 450, enhanced: '4.7.1' } });
    expect((await run('down.example', { tempfail: 'next' })).action).toBe('next');
  });
});

describe('sender-domain and recipient-domain (reject_unknown_*_domain)', () => {
  const dns = new FakeResolver({
    'ok.example': { MX: [{ priority: 10, exchange: 'mx.ok.example' }] },
    'mx.ok.example': { A: ['192.0.2.25'] },
    'implicit.example': { A: ['192.0.2.26'] },
    'null.example': { MX: [{ priority: 0, exchange: '.' }] },
    'private.example': {
      MX: [
        { priority: 10, exchange: 'mx.private.example' },
        { priority: 20, exchange: 'lo.private.example' },
      ],
    },
    'mx.private.example': { A: ['10.1.2.3'] },
    'lo.private.example': { A: ['127.0.0.1'], AAAA: ['::1'] },
    'mixed.example': {
      MX: [
        { priority: 10, exchange: 'mx.private.example' },
        { priority: 20, exchange: 'mx.ok.example' },
      ],
    },
    'nodata.example': { TXT: ['v=spf1 -all'] },
  })
    .fail('down.example', 'MX')
    .fail('halfdown.example', 'A');
  dns.set('halfdown.example', 'TXT', ['x']);
  const sender = (mailFrom: string, o = {}) => senderDomain(dns, o).run(s({ mailFrom }), ctx());
  const rcpt = (rcptTo: string, o = {}) => recipientDomain(dns, o).run(s({ rcptTo }), ctx());

  it('passes domains with an MX or an address, and the null sender', async () => {
    for (const a of ['a@ok.example', 'a@implicit.example', '', 'a@[192.0.2.1]', 'a@mixed.example']) {
      expect((await sender(a)).action, a).toBe('next');
    }
  });
  it('null MX: 550 5.7.27 for senders, 556 5.1.10 for recipients (RFC 7505)', async () => {
    const v = await sender('a@null.example');
    expect(v.action === 'reject' && v.reply).toEqual({
      code: 550,
      enhanced: '5.7.27',
      text: '<a@null.example>: Sender address rejected: Domain null.example does not accept mail (nullMX)',
    });
    const r = await rcpt('b@null.example');
    expect(r.action === 'reject' && r.reply).toMatchObject({ code: 556, enhanced: '5.1.10' });
  });
  it('our own domains are never looked up: Postfix checks only where it is not the final destination', async () => {
    const before = dns.calls.length;
    const o = { ourDomains: ['null.example', 'nx.example'] };
    expect((await rcpt('b@null.example', o)).action).toBe('next');
    expect((await rcpt('b@NX.example.', o)).action).toBe('next');
    expect((await sender('a@nx.example', o)).action).toBe('next');
    expect(dns.calls.length).toBe(before);
    expect((await rcpt('b@other-nx.example', o)).action).toBe('defer');
  });
  it('not found: 450 4.1.8 / 4.1.2 by default, 550 when configured', async () => {
    const v = await sender('a@nx.example');
    expect(v.action === 'defer' && v.reply).toEqual({
      code: 450,
      enhanced: '4.1.8',
      text: '<a@nx.example>: Sender address rejected: Domain not found',
    });
    const n = await sender('a@nodata.example', { rejectCode: 550 });
    expect(n.action === 'reject' && n.reply).toMatchObject({ code: 550, enhanced: '5.1.8' });
    const r = await rcpt('b@nx.example', { rejectCode: 550 });
    expect(r.action === 'reject' && r.reply).toMatchObject({ code: 550, enhanced: '5.1.2' });
  });
  it('temporary failure: defer_if_permit 450, never 5xx, even with rejectCode 550', async () => {
    for (const a of ['a@down.example', 'a@halfdown.example']) {
      const v = await sender(a, { rejectCode: 550 });
      expect(v, a).toMatchObject({
        action: 'defer',
        ifPermit: true,
        reply: { code: 450, enhanced: '4.1.8' },
      });
    }
  });
  it('an MX only at private/loopback addresses is a finding of its own', async () => {
    const v = await sender('a@private.example');
    expect(v.action === 'defer' && v.reply.code).toBe(450);
    expect(v.reason).toContain('loopback/private');
    expect((await rcpt('b@private.example')).action).toBe('next'); // off for recipients by default
    expect((await sender('a@private.example', { privateMx: 'score' })).findings).toEqual([
      { check: 'sender-domain', tag: 'mx-private', score: 1 },
    ]);
  });
});

describe('config and factories', () => {
  it('reads dnsLists and rhsLists as postscreen does, with errors naming the key', () => {
    const cfg = dnsSettingsFromConfig({
      dnsLists: ['zen.spamhaus.org=127.0.0.[2..11]*3', 'list.dnswl.org=127.0.[0..255].[1..3]*-2'],
      rhsLists: ['dbl.spamhaus.org=127.0.1.[2..99]'],
      dns: { servers: ['127.0.0.1:5353'], timeout: 1000 },
    });
    expect(cfg.dnsLists.map((l) => [l.zone, l.weight])).toEqual([
      ['zen.spamhaus.org', 3],
      ['list.dnswl.org', -2],
    ]);
    expect(cfg.resolver).toEqual({ servers: ['127.0.0.1:5353'], timeout: 1000 });
    expect(() => dnsSettingsFromConfig({ dnsLists: ['zen.spamhaus.org=127.0.0.[2..300]'] })).toThrow(
      ConfigError,
    );
    expect(() => dnsSettingsFromConfig({ dnsLists: ['zen.spamhaus.org=127.0.0.[2..300]'] })).toThrow(
      /dnsLists\[0\]/,
    );
    expect(() => dnsSettingsFromConfig({ dns: { tiemout: 5 } })).toThrow(/dns.tiemout/);
  });
  it('builds every DNS check by name, and refuses bad options', async () => {
    const dns = new FakeResolver({
      '99.2.0.192.zen.example': { A: ['127.0.0.2'] },
      '99.2.0.192.wl.example': { A: ['127.0.1.1'] },
    });
    const env = {
      resolver: dns,
      dnsLists: ['zen.example*3', 'wl.example=127.0.[0..255].[1..3]*-2'],
      health: false as const,
    };
    const registry = bindFactories(dnsFactories, env);
    expect(Object.keys(registry).sort()).toEqual([
      'dnsbl',
      'dnswl',
      'fcrdns',
      'helo-resolves',
      'recipient-domain',
      'rhsbl',
      'sender-domain',
    ]);
    const policy = buildPolicy({ checks: ['dnswl', { name: 'dnsbl', threshold: 3 }] }, registry, {
      clock: new ManualClock(0),
    });
    const d = await policy.chain.evaluate(s());
    expect(d.action).toBe('accept');
    expect(d.check).toBe('dnswl');
    expect(() => buildPolicy({ checks: [{ name: 'dnsbl', lists: ['bad'] }] }, registry)).toThrow(/dnsbl/);
    expect(() => buildPolicy({ checks: [{ name: 'helo-resolves', rejectCode: 554 }] }, registry)).toThrow(
      /rejectCode/,
    );
    expect(() => buildPolicy({ checks: [{ name: 'rhsbl', targets: ['body'] }] }, registry)).toThrow(
      /targets/,
    );
    expect(site().ourDomains).toEqual(['example.com']);
  });
});
