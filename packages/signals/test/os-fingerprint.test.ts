import type { CheckContext, Finding, Session } from '@mxguard/core';
import { chain, ManualClock, silentLogger, weigh } from '@mxguard/core';
import type { GeoLookup, P0fAnswer, P0fHost, P0fLookup } from '@mxguard/signals';
import { geoCheck, looksDynamic, osFingerprintCheck, ptrState } from '@mxguard/signals';
import { describe, expect, it } from 'vitest';

const host = (osName: string, extra: Partial<P0fHost> = {}): P0fHost => ({
  firstSeen: 1,
  lastSeen: 2,
  totalConn: 1,
  uptimeMin: 0,
  upModDays: 0,
  lastNat: 0,
  lastChg: 0,
  distance: 12,
  badSw: 0,
  osMatchQ: 0,
  osName,
  osFlavor: '',
  httpName: '',
  httpFlavor: '',
  linkType: 'Ethernet or modem',
  language: '',
  ...extra,
});

/** A fake p0f: answers by address, records what it was asked. */
function fakeP0f(answers: Record<string, P0fAnswer | Error>): P0fLookup & { asked: string[] } {
  const asked: string[] = [];
  return {
    asked,
    async query(address) {
      asked.push(address);
      const a = answers[address];
      if (a instanceof Error) throw a;
      return a ?? { status: 'no-match' };
    },
  };
}

/** A fake geo database: by address. */
const geo = (countries: Record<string, string>): GeoLookup => ({
  lookup: (address) =>
    countries[address]
      ? { found: true, address, country: countries[address] }
      : { found: false, address, reason: 'not-in-database' },
});

const ctx = (findings: Finding[] = []): CheckContext => ({
  clock: new ManualClock(0),
  log: silentLogger,
  findings,
});
const s = (clientAddress: string, extra: Partial<Session> = {}): Session => ({
  clientAddress,
  stage: 'connect',
  ...extra,
});

const p0f = fakeP0f({
  '198.51.100.1': { status: 'ok', host: host('Windows', { osFlavor: '7 or 8' }) },
  '198.51.100.2': { status: 'ok', host: host('Linux', { osFlavor: '3.11 and newer' }) },
  '198.51.100.3': { status: 'ok', host: host('') },
  '198.51.100.4': { status: 'unknown', reason: 'timeout after 500 ms' },
  '198.51.100.5': new Error('boom'),
  '198.51.100.6': { status: 'ok', host: host('Mac OS X') },
  '2001:db8::7': { status: 'ok', host: host('Windows') },
});

describe('os-fingerprint: the OS alone', () => {
  it('scores desktop genres, not Linux/BSD/unknown', async () => {
    const c = osFingerprintCheck({ p0f });
    const win = await c.run(s('198.51.100.1'), ctx());
    expect(win).toEqual({
      action: 'next',
      reason: '198.51.100.1 fingerprints as Windows 7 or 8, distance 12, link Ethernet or modem',
      findings: [{ check: 'os-fingerprint', tag: 'os:Windows', score: 1 }],
    });
    expect((await c.run(s('198.51.100.2'), ctx())).findings).toEqual([
      { check: 'os-fingerprint', tag: 'os:Linux' },
    ]);
    expect((await c.run(s('198.51.100.3'), ctx())).findings).toEqual([
      { check: 'os-fingerprint', tag: 'os:???' },
    ]);
    expect((await c.run(s('198.51.100.6'), ctx())).findings).toEqual([
      { check: 'os-fingerprint', tag: 'os:Mac OS X', score: 0.5 },
    ]);
    expect((await c.run(s('::ffff:198.51.100.1'), ctx())).findings?.[0]?.score).toBe(1);
    expect((await c.run(s('2001:db8::7'), ctx())).findings?.[0]?.score).toBe(1);
  });

  it('p0f silent, down or throwing is no opinion with the reason', async () => {
    const c = osFingerprintCheck({ p0f });
    expect(await c.run(s('198.51.100.4'), ctx())).toEqual({
      action: 'next',
      reason: 'p0f: unknown (timeout after 500 ms)',
    });
    expect(await c.run(s('198.51.100.5'), ctx())).toEqual({ action: 'next', reason: 'p0f: unknown (boom)' });
    expect(await c.run(s('198.51.100.99'), ctx())).toEqual({
      action: 'next',
      reason: 'p0f has not fingerprinted 198.51.100.99',
    });
    expect(await c.run(s('junk'), ctx())).toMatchObject({ action: 'next' });
  });

  it('scores are configurable by OS prefix (longest wins) and greylist adds a doubt', async () => {
    const c = osFingerprintCheck({ p0f, scores: { Windows: 0, Linux: 0.25 }, action: 'greylist' });
    expect((await c.run(s('198.51.100.1'), ctx())).findings).toEqual([
      { check: 'os-fingerprint', tag: 'os:Windows' },
    ]);
    expect((await c.run(s('198.51.100.2'), ctx())).findings).toEqual([
      { check: 'os-fingerprint', tag: 'os:Linux', score: 0.25, doubt: true },
    ]);
  });

  it('never judges authenticated or exempt clients, and never asks p0f for them', async () => {
    const f = fakeP0f({});
    const c = osFingerprintCheck({ p0f: f, exempt: ['198.51.100.0/24'] });
    await c.run(s('198.51.100.1'), ctx());
    await c.run(s('203.0.113.1', { authUser: 'bob' }), ctx());
    expect(f.asked).toEqual([]);
  });

  it('refuses an action that could refuse mail, and other bad options', () => {
    expect(() => osFingerprintCheck({ p0f, action: 'reject' as never })).toThrow(/never proof/);
    expect(() => osFingerprintCheck({ p0f, expectedCountries: ['Germany'] })).toThrow(TypeError);
    expect(() => osFingerprintCheck({ p0f, scores: { Windows: 'high' as never } })).toThrow(TypeError);
    expect(() => osFingerprintCheck({ p0f: {} as never })).toThrow(TypeError);
  });
});

describe('os-fingerprint: the combination rule', () => {
  const db = geo({ '198.51.100.1': 'BR', '198.51.100.2': 'BR', '198.51.100.6': 'DE' });
  const c = osFingerprintCheck({ p0f, geo: db, expectedCountries: ['DE', 'AT', 'CH'] });
  const combo = (fs: readonly Finding[] | undefined) => fs?.find((f) => f.tag.startsWith('desktop+'));

  it('desktop + unexpected country + missing PTR: near certainty', async () => {
    const v = await c.run(s('198.51.100.1', { rdns: { names: [] } }), ctx());
    expect(combo(v.findings)).toEqual({ check: 'os-fingerprint', tag: 'desktop+BR+missing-ptr', score: 10 });
    expect(v.reason).toMatch(/desktop OS Windows from BR \(not expected\) with missing PTR/);
  });

  it('desktop + unexpected country + dynamic PTR (own heuristic, or an earlier rdns-dynamic finding)', async () => {
    const dyn = await c.run(s('198.51.100.1', { rdns: { names: ['100-1.dsl.example.net.br'] } }), ctx());
    expect(combo(dyn.findings)?.tag).toBe('desktop+BR+dynamic-ptr');
    const named = await c.run(
      s('198.51.100.1', { rdns: { names: ['mail.example.com.br'], verified: 'mail.example.com.br' } }),
      ctx([{ check: 'rdns-dynamic', tag: 'dynamic', score: 1 }]),
    );
    expect(combo(named.findings)?.tag).toBe('desktop+BR+dynamic-ptr');
  });

  it('any one of the three missing: no combination', async () => {
    const good = { rdns: { names: ['mail.example.com.br'], verified: 'mail.example.com.br' } };
    // a proper PTR
    expect(combo((await c.run(s('198.51.100.1', good), ctx())).findings)).toBeUndefined();
    // not a desktop
    expect(combo((await c.run(s('198.51.100.2', { rdns: { names: [] } }), ctx())).findings)).toBeUndefined();
    // an expected country
    expect(combo((await c.run(s('198.51.100.6', { rdns: { names: [] } }), ctx())).findings)).toBeUndefined();
    // reverse DNS not known (temporary failure, or not looked up): not "missing"
    const tmp = { rdns: { names: [], error: 'temporary' as const } };
    expect(combo((await c.run(s('198.51.100.1', tmp), ctx())).findings)).toBeUndefined();
    expect(combo((await c.run(s('198.51.100.1'), ctx())).findings)).toBeUndefined();
    // country unknown
    const noGeo = osFingerprintCheck({ p0f, expectedCountries: ['DE'] });
    expect(
      combo((await noGeo.run(s('198.51.100.1', { rdns: { names: [] } }), ctx())).findings),
    ).toBeUndefined();
    // rule off without expectedCountries
    const off = osFingerprintCheck({ p0f, geo: db });
    expect(
      combo((await off.run(s('198.51.100.1', { rdns: { names: [] } }), ctx())).findings),
    ).toBeUndefined();
  });

  it('reads the country from an earlier geo link, and in a chain with weigh() rejects on the combination', async () => {
    const noDb = osFingerprintCheck({ p0f, expectedCountries: ['DE'], combinationScore: 8 });
    const v = await noDb.run(
      s('198.51.100.1', { rdns: { names: [] } }),
      ctx([{ check: 'geo', tag: 'country:BR' }]),
    );
    expect(combo(v.findings)).toEqual({ check: 'os-fingerprint', tag: 'desktop+BR+missing-ptr', score: 8 });

    const geoLink = geoCheck({ database: db });
    const c2 = chain([geoLink, weigh({ checks: [noDb], reject: 8 })], { clock: new ManualClock(0) });
    const rcpt = { stage: 'rcpt' as const, rcptTo: 'a@example.com', rdns: { names: [] } };
    const d = await c2.evaluate(s('198.51.100.1', rcpt));
    expect(d).toMatchObject({ action: 'reject', check: 'weigh', reply: { code: 554 } });
    // The same client with a Linux stack: only the geo finding, no score, accepted onward.
    const d2 = await c2.evaluate(s('198.51.100.2', rcpt));
    expect(d2.action).toBe('next');
  });
});

describe('PTR helpers', () => {
  it('looksDynamic recognises address-embedding and access-network names, not mail hosts', () => {
    expect(looksDynamic('198.51.100.1', '198-51-100-1.example.net')).toBe(true);
    expect(looksDynamic('198.51.100.1', '1.100.51.198.in-addr.example.net')).toBe(true);
    expect(looksDynamic('198.51.100.1', 'c198051100001.cable.example')).toBe(true);
    expect(looksDynamic('203.0.113.9', 'pool-7.dyn.example.org')).toBe(true);
    expect(looksDynamic('203.0.113.9', 'adsl-xyz.example.org')).toBe(true);
    expect(looksDynamic('203.0.113.9', 'mail.example.org')).toBe(false);
    expect(looksDynamic('203.0.113.9', 'mx1.customerservice.example')).toBe(false);
  });

  it('ptrState: missing, dynamic, unconfirmed, ok, unknown', () => {
    expect(ptrState(s('203.0.113.9', { rdns: { names: [] } }), [])).toBe('missing');
    expect(ptrState(s('203.0.113.9'), [{ check: 'rdns-missing', tag: 'no-ptr' }])).toBe('missing');
    expect(ptrState(s('203.0.113.9', { rdns: { names: ['mail.example.org'], verified: null } }), [])).toBe(
      'missing',
    );
    expect(
      ptrState(s('203.0.113.9', { rdns: { names: ['mail.example.org'], verified: 'mail.example.org' } }), []),
    ).toBe('ok');
    expect(ptrState(s('203.0.113.9', { rdns: { names: [], error: 'temporary' } }), [])).toBe('unknown');
    expect(ptrState(s('203.0.113.9'), [])).toBe('unknown');
  });
});
