/**
 * The DNS checks against real DNS servers on loopback: rbldnsd serving IPv4, IPv6 and name lists
 * (the Debian package), and nsd serving authoritative test zones with MX, null MX, PTR and FCrDNS
 * cases. Both are started here on free ports with their own config and data, and stopped at the end.
 * The resolver talks to each through its `servers` setting (one resolver per server, as a site's
 * local recursive resolver would front both).
 */
import type { CheckContext, Session } from '@mxguard/core';
import { ManualClock } from '@mxguard/core';
import {
  DnsResolver,
  dnsbl,
  dnswl,
  fcrdns,
  heloResolves,
  ListHealth,
  lookupRdns,
  parseListSpec,
  recipientDomain,
  rhsbl,
  senderDomain,
} from '@mxguard/dns';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Daemon, startNsd, startRbldnsd } from './helpers/daemons.js';

let rbl: Daemon;
let nsd: Daemon;
let lists: DnsResolver;
let zones: DnsResolver;
const quiet = { debug() {}, info() {}, warn() {}, error() {} };
const errors: object[] = [];
const ctx = (): CheckContext => ({
  clock: new ManualClock(1_000),
  log: { ...quiet, error: (o: object) => errors.push(o) },
  findings: [],
});

const SOA = (o: string) =>
  `$ORIGIN ${o}.\n$TTL 300\n@ SOA ns.${o}. host.${o}. 1 3600 600 86400 300\n@ NS ns.${o}.\nns A 127.0.0.1\n`;

beforeAll(async () => {
  rbl = await startRbldnsd({
    'bl.test': [
      {
        type: 'ip4set',
        data: ':127.0.0.2:Listed by bl.test, see https://bl.test/$\n127.0.0.2\n192.0.2.99\n192.0.2.100 :127.0.0.4:Listed as a botnet\n',
      },
      { type: 'ip6trie', data: ':127.0.0.2:Listed IPv6 $\n2001:db8:bad::/48\n' },
    ],
    // A list whose operator answers an error code for one address, and one outside 127/8.
    'err.test': [
      {
        type: 'ip4set',
        data: '127.0.0.2 :127.0.0.2:test\n192.0.2.99 :127.255.255.254:public resolver\n192.0.2.98 :10.0.0.2:wildcard\n',
      },
    ],
    // A broken list: it lists everything, 127.0.0.1 included.
    'all.test': [{ type: 'ip4set', data: ':127.0.0.2:everything\n0.0.0.0/1\n128.0.0.0/1\n' }],
    // An IPv6 list that lists every IPv6 address, ::FFFF:7F00:1 included. (A zone that also has
    // an ip4set answers IPv4-mapped queries from it, so the broken list is IPv6 only.)
    'all6.test': [{ type: 'ip6trie', data: ':127.0.0.2:everything\n::/1\n8000::/1\n' }],
    'wl.test': [
      {
        type: 'ip4set',
        data: '127.0.0.2 :127.0.10.2:test\n192.0.2.50 :127.0.10.3:allowlisted\n192.0.2.51 :127.0.0.255:over limit\n',
      },
    ],
    'dbl.test': [{ type: 'dnset', data: ':127.0.1.2:Spam domain $\ntest\nspammer.example\n' }],
  });
  nsd = await startNsd({
    test: `${SOA('test')}
mail A 192.0.2.10
mail AAAA 2001:db8::10
ok MX 10 mail.test.
null MX 0 .
implicit A 192.0.2.11
nodata TXT "no mail here"
private MX 10 lo.test.
private MX 20 rfc1918.test.
lo A 127.0.0.1
rfc1918 A 10.1.2.3
fcr A 192.0.2.99
other A 192.0.2.1
multi1 A 192.0.2.7
multi2 A 192.0.2.77
`,
    '2.0.192.in-addr.arpa': `${SOA('2.0.192.in-addr.arpa')}
99 PTR fcr.test.
98 PTR other.test.
77 PTR multi1.test.
77 PTR multi2.test.
`,
  });
  lists = new DnsResolver({ servers: [rbl.address], timeout: 1000, tries: 2 });
  zones = new DnsResolver({ servers: [nsd.address], timeout: 1000, tries: 2 });
}, 60_000);

afterAll(async () => {
  await rbl?.stop();
  await nsd?.stop();
});

const s = (over: Partial<Session> = {}): Session => ({ clientAddress: '192.0.2.99', stage: 'rcpt', ...over });

describe('DNS lists served by rbldnsd', () => {
  it('finds an IPv4 listing with its TXT reason; an unlisted client passes', async () => {
    const check = dnsbl(lists, [parseListSpec('bl.test=127.0.0.[2..11]')], { health: new ListHealth() });
    const v = await check.run(s(), ctx());
    expect(v.action === 'reject' && v.reply.text).toBe(
      'Service unavailable; Client host [192.0.2.99] blocked using bl.test; Listed by bl.test, see https://bl.test/192.0.2.99',
    );
    expect((await check.run(s({ clientAddress: '192.0.2.1' }), ctx())).action).toBe('next');
  });

  it('honours the return-code filter', async () => {
    const only2 = dnsbl(lists, [parseListSpec('bl.test=127.0.0.2')], { health: false });
    expect((await only2.run(s({ clientAddress: '192.0.2.100' }), ctx())).action).toBe('next');
    const any = dnsbl(lists, [parseListSpec('bl.test=127.0.0.[2..11]')], { health: false });
    expect((await any.run(s({ clientAddress: '192.0.2.100' }), ctx())).action).toBe('reject');
  });

  it('finds an IPv6 listing by reversed nibbles', async () => {
    const check = dnsbl(lists, [parseListSpec('bl.test')], { health: false });
    expect((await check.run(s({ clientAddress: '2001:db8:bad::25' }), ctx())).action).toBe('reject');
    expect((await check.run(s({ clientAddress: '2001:db8:900d::25' }), ctx())).action).toBe('next');
  });

  it('error answers (127.255.255.254, outside 127/8, 127.0.0.255) are not listings', async () => {
    errors.length = 0;
    const check = dnsbl(lists, [parseListSpec('err.test')], { health: false });
    expect((await check.run(s(), ctx())).action).toBe('next');
    expect((await check.run(s({ clientAddress: '192.0.2.98' }), ctx())).action).toBe('next');
    expect(errors.length).toBe(2);
    const wl = dnswl(lists, [parseListSpec('wl.test=127.0.[0..255].[1..3]*-2')], { health: false });
    expect((await wl.run(s({ clientAddress: '192.0.2.50' }), ctx())).action).toBe('accept');
    expect((await wl.run(s({ clientAddress: '192.0.2.51' }), ctx())).action).toBe('next');
  });

  it('the 127.0.0.1 probe disables a list that lists everything', async () => {
    errors.length = 0;
    const check = dnsbl(lists, [parseListSpec('all.test')], { health: new ListHealth() });
    const v = await check.run(s({ clientAddress: '198.51.100.1' }), ctx());
    expect(v.action).toBe('next');
    expect(v.reason).toContain('all.test:disabled');
    expect(errors.some((e) => JSON.stringify(e).includes('all.test'))).toBe(true);
  });

  it('the ::FFFF:7F00:1 probe disables the IPv6 side of a list that lists every IPv6 address', async () => {
    errors.length = 0;
    const health = new ListHealth();
    const check = dnsbl(lists, [parseListSpec('all6.test')], { health });
    const v = await check.run(s({ clientAddress: '2001:db8:900d::25' }), ctx());
    expect(v.action).toBe('next');
    expect(v.reason).toContain('all6.test:disabled');
    expect(health.last('all6.test', 'ip6')?.detail).toContain('::FFFF:7F00:1');
    expect(errors.some((e) => JSON.stringify(e).includes('all6.test'))).toBe(true);
    // IPv4 clients are judged on the IPv4 probe, which does not disable it.
    expect((await check.run(s(), ctx())).reason).toContain('all6.test:clean');
    expect(health.last('all6.test', 'ip')).toMatchObject({ listsEverything: false, missingTestEntry: true });
    // A healthy list answers ::FFFF:7F00:2 and not ::FFFF:7F00:1 (rbldnsd from its ip4set).
    const ok = new ListHealth();
    const bl = dnsbl(lists, [parseListSpec('bl.test')], { health: ok });
    expect((await bl.run(s({ clientAddress: '2001:db8:bad::25' }), ctx())).action).toBe('reject');
    expect(ok.last('bl.test', 'ip6')).toMatchObject({ listsEverything: false, missingTestEntry: false });
  });

  it('right-hand-side list of names (dnset) for the sender domain', async () => {
    const check = rhsbl(lists, [parseListSpec('dbl.test')], {
      health: new ListHealth(),
      targets: ['sender'],
    });
    const v = await check.run(s({ mailFrom: 'x@spammer.example' }), ctx());
    expect(v.action === 'reject' && v.reply.text).toBe(
      'Service unavailable; Sender address [spammer.example] blocked using dbl.test; Spam domain spammer.example',
    );
    expect((await check.run(s({ mailFrom: 'x@good.example' }), ctx())).action).toBe('next');
  });
});

describe('test zones served by nsd', () => {
  it('reverse DNS: FCrDNS match, mismatch, several PTRs, none', async () => {
    expect(await lookupRdns(zones, '192.0.2.99')).toEqual({ names: ['fcr.test'], verified: 'fcr.test' });
    expect(await lookupRdns(zones, '192.0.2.98')).toEqual({ names: ['other.test'], verified: null });
    const multi = await lookupRdns(zones, '192.0.2.77');
    expect([...multi.names].sort()).toEqual(['multi1.test', 'multi2.test']);
    expect(multi.verified).toBe('multi2.test');
    expect(await lookupRdns(zones, '192.0.2.1')).toEqual({ names: [], verified: null });
    const f = await fcrdns(zones, { action: 'score' }).run(s({ clientAddress: '192.0.2.98' }), ctx());
    expect(f.findings?.[0]?.tag).toBe('not-fcrdns');
  });

  it('HELO resolves: address or MX; unknown defers 450 4.7.1', async () => {
    const h = heloResolves(zones);
    expect((await h.run(s({ helo: 'mail.test' }), ctx())).action).toBe('next');
    expect((await h.run(s({ helo: 'ok.test' }), ctx())).action).toBe('next');
    const v = await h.run(s({ helo: 'nowhere.test' }), ctx());
    expect(v.action === 'defer' && v.reply).toMatchObject({ code: 450, enhanced: '4.7.1' });
  });

  it('sender and recipient domains: MX, implicit MX, null MX, not found, private MX', async () => {
    const snd = senderDomain(zones);
    const rcp = recipientDomain(zones);
    expect((await snd.run(s({ mailFrom: 'a@ok.test' }), ctx())).action).toBe('next');
    expect((await snd.run(s({ mailFrom: 'a@implicit.test' }), ctx())).action).toBe('next');
    const n = await snd.run(s({ mailFrom: 'a@null.test' }), ctx());
    expect(n.action === 'reject' && n.reply).toMatchObject({ code: 550, enhanced: '5.7.27' });
    const nr = await rcp.run(s({ rcptTo: 'b@null.test' }), ctx());
    expect(nr.action === 'reject' && nr.reply).toMatchObject({ code: 556, enhanced: '5.1.10' });
    const nf = await snd.run(s({ mailFrom: 'a@nowhere.test' }), ctx());
    expect(nf.action === 'defer' && nf.reply).toMatchObject({ code: 450, enhanced: '4.1.8' });
    const nd = await senderDomain(zones, { rejectCode: 550 }).run(s({ mailFrom: 'a@nodata.test' }), ctx());
    expect(nd.action === 'reject' && nd.reply).toMatchObject({ code: 550, enhanced: '5.1.8' });
    const p = await snd.run(s({ mailFrom: 'a@private.test' }), ctx());
    expect(p.action).toBe('defer');
    expect(p.reason).toContain('loopback/private');
  });
});
