import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { CheckContext, Logger, Session } from '@mxguard/core';
import { chain, ManualClock, silentLogger, weigh } from '@mxguard/core';
import type { FileWatcher } from '@mxguard/signals';
import { decodedBytes, GeoDatabase, GeoDatabases, geoCheck } from '@mxguard/signals';
import { Reader } from 'mmdb-lib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { countryRecord, MmdbWriter } from './helpers/mmdb-writer.js';

let dir: string;
const ctx: CheckContext = { clock: new ManualClock(0), log: silentLogger, findings: [] };
const session = (clientAddress: string, extra: Partial<Session> = {}): Session => ({
  clientAddress,
  stage: 'connect',
  ...extra,
});

/** The first test database: a few countries in IPv4 and IPv6, a nested network, an ASN record. */
function firstDb(recordSize: 24 | 28 | 32 = 24): Buffer {
  return new MmdbWriter({ recordSize, databaseType: 'GeoLite2-Country' })
    .insert('81.0.0.0/8', countryRecord('DE'))
    .insert('81.2.69.0/24', countryRecord('GB')) // more specific, inside the DE /8
    .insert('175.16.199.0/24', countryRecord('CN'))
    .insert('2a02:8000::/20', countryRecord('DE'))
    .insert('2001:218::/32', countryRecord('JP'))
    .insert('89.160.20.0/24', {
      registered_country: { iso_code: 'SE', geoname_id: 1, names: { en: 'Sweden' } },
      autonomous_system_number: 29518,
      autonomous_system_organization: 'Bredband2 AB',
    })
    .build();
}

const logs: { level: string; msg: string | undefined; obj: object }[] = [];
const log: Logger = {
  debug: (obj, msg) => logs.push({ level: 'debug', obj, msg }),
  info: (obj, msg) => logs.push({ level: 'info', obj, msg }),
  warn: (obj, msg) => logs.push({ level: 'warn', obj, msg }),
  error: (obj, msg) => logs.push({ level: 'error', obj, msg }),
};

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'mxguard-geo-'));
});
afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

describe('the test MMDB writer, read by mmdb-lib', () => {
  for (const recordSize of [24, 28, 32] as const) {
    it(`writes ${recordSize}-bit records that mmdb-lib reads back`, () => {
      const r = new Reader<Record<string, { iso_code?: string }>>(firstDb(recordSize));
      expect(r.metadata.recordSize).toBe(recordSize);
      expect(r.metadata.databaseType).toBe('GeoLite2-Country');
      expect(r.get('81.1.1.1')?.country?.iso_code).toBe('DE');
      expect(r.get('81.2.69.160')?.country?.iso_code).toBe('GB');
      expect(r.get('2a02:8001::1')?.country?.iso_code).toBe('DE');
      expect(r.get('2001:218:1::1')?.country?.iso_code).toBe('JP');
      expect(r.get('82.0.0.1')).toBeNull();
    });
  }

  it('can write a tree that needs 28-bit records (more than 2^24 node+data values)', () => {
    // A data section past 16 MiB pushes record values over 2^24: a 24-bit tree cannot hold them.
    const pad = (c: string) => ({ pad: c.repeat(9 * 1024 * 1024) });
    const w = (recordSize: 24 | 28) =>
      new MmdbWriter({ recordSize })
        .insert('81.0.0.0/8', pad('x'))
        .insert('83.0.0.0/8', pad('y'))
        .insert('84.0.0.0/8', countryRecord('FR'));
    expect(() => w(24).build()).toThrow(/24 bits/);
    const r = new Reader<Record<string, { iso_code?: string }>>(w(28).build());
    expect(r.metadata.recordSize).toBe(28);
    expect(r.get('84.1.2.3')?.country?.iso_code).toBe('FR');
  });
});

describe('GeoDatabase', () => {
  it('answers IPv4, IPv6, IPv4-mapped IPv6, unknown, private and invalid addresses', () => {
    const path = join(dir, 'a.mmdb');
    writeFileSync(path, firstDb());
    const db = new GeoDatabase({ path, watch: false });
    expect(db.databaseType).toBe('GeoLite2-Country');
    expect(db.lookup('81.1.1.1')).toEqual({
      found: true,
      address: '81.1.1.1',
      country: 'DE',
      registeredCountry: 'DE',
    });
    expect(db.lookup('81.2.69.160')).toMatchObject({ found: true, country: 'GB' });
    expect(db.lookup('::ffff:175.16.199.1')).toMatchObject({
      found: true,
      address: '175.16.199.1',
      country: 'CN',
    });
    expect(db.lookup('2001:218:0:0::5')).toMatchObject({
      found: true,
      address: '2001:218::5',
      country: 'JP',
    });
    expect(db.lookup('89.160.20.1')).toEqual({
      found: true,
      address: '89.160.20.1',
      registeredCountry: 'SE',
      asn: 29518,
      asOrg: 'Bredband2 AB',
    });
    expect(db.lookup('8.8.8.8')).toEqual({ found: false, address: '8.8.8.8', reason: 'not-in-database' });
    expect(db.lookup('2001:4860::1')).toMatchObject({ found: false, reason: 'not-in-database' });
    expect(db.lookup('10.1.2.3')).toMatchObject({ found: false, reason: 'not-public' });
    expect(db.lookup('127.0.0.1')).toMatchObject({ found: false, reason: 'not-public' });
    expect(db.lookup('::1')).toMatchObject({ found: false, reason: 'not-public' });
    expect(db.lookup('fe80::1%eth0')).toMatchObject({ found: false, reason: 'not-public' });
    expect(db.lookup('not an ip')).toMatchObject({ found: false, reason: 'invalid' });
    expect(db.lookup('127.1')).toMatchObject({ found: false, reason: 'invalid' });
    expect(db.lookup('x'.repeat(10_000))).toMatchObject({ found: false, reason: 'invalid' });
  });

  it('reads an IPv4-only tree', () => {
    const path = join(dir, 'v4.mmdb');
    writeFileSync(path, new MmdbWriter({ ipVersion: 4 }).insert('81.0.0.0/8', countryRecord('DE')).build());
    const db = new GeoDatabase({ path, watch: false });
    expect(db.lookup('81.9.9.9')).toMatchObject({ found: true, country: 'DE' });
    expect(db.lookup('2a02:8000::1')).toMatchObject({ found: false });
  });

  it('fails loudly at startup on a missing or corrupt file', () => {
    expect(() => new GeoDatabase({ path: join(dir, 'missing.mmdb'), watch: false })).toThrow(/cannot read/);
    const bad = join(dir, 'bad.mmdb');
    writeFileSync(bad, 'this is not a MaxMind database');
    expect(() => new GeoDatabase({ path: bad, watch: false })).toThrow(/not a MaxMind DB|corrupt/);
  });

  it('reloads when told: the new data answers, and a corrupt or truncated file keeps the old', async () => {
    logs.length = 0;
    const path = join(dir, 'reload.mmdb');
    writeFileSync(path, firstDb());
    const db = new GeoDatabase({ path, watch: false, log });
    expect(db.lookup('81.1.1.1')).toMatchObject({ country: 'DE' });

    writeFileSync(path, new MmdbWriter().insert('81.0.0.0/8', countryRecord('FR')).build());
    await expect(db.reload()).resolves.toEqual({ status: 'reloaded' });
    expect(db.generation).toBe(1);
    expect(db.lookup('81.1.1.1')).toMatchObject({ country: 'FR' });
    expect(db.lookup('175.16.199.1')).toMatchObject({ found: false, reason: 'not-in-database' });

    // A partial download: the first half of a valid file. The old database stays in use.
    const good = firstDb();
    writeFileSync(path, good.subarray(0, Math.floor(good.length / 2)));
    const failed = await db.reload();
    expect(failed.status).toBe('failed');
    expect(db.generation).toBe(1);
    expect(db.lookup('81.1.1.1')).toMatchObject({ country: 'FR' });
    expect(logs.some((l) => l.level === 'error' && /keeping the previous/.test(l.msg ?? ''))).toBe(true);

    // Metadata intact, tree bytes garbled (node pointers past the end): still refused.
    const garbled = Buffer.from(good);
    garbled.fill(0xff, 0, 64);
    writeFileSync(path, garbled);
    expect((await db.reload()).status).toBe('failed');
    expect(db.lookup('81.1.1.1')).toMatchObject({ country: 'FR' });

    writeFileSync(path, good);
    await expect(db.reload()).resolves.toEqual({ status: 'reloaded' });
    expect(db.lookup('81.1.1.1')).toMatchObject({ country: 'DE' });
  });

  it('reloads when its watcher reports a change, and only if the file did change', async () => {
    const path = join(dir, 'watched.mmdb');
    writeFileSync(path, firstDb());
    let trigger: (() => void) | undefined;
    let closed = false;
    const watcher: FileWatcher = (p, onChange) => {
      expect(p).toBe(path);
      trigger = onChange;
      return {
        close: () => {
          closed = true;
        },
      };
    };
    const db = new GeoDatabase({ path, watch: watcher });
    expect(trigger).toBeDefined();
    // An event for an unchanged file (same inode, size, mtime) does not reparse.
    trigger?.();
    await db.reload(false);
    expect(db.generation).toBe(0);

    writeFileSync(path, new MmdbWriter().insert('2a02:8000::/20', countryRecord('AT')).build());
    trigger?.();
    await db.reload(false); // joins the reload the trigger started, then reports on the file
    expect(db.generation).toBe(1);
    expect(db.lookup('2a02:8000::1')).toMatchObject({ country: 'AT' });
    db.close();
    expect(closed).toBe(true);
  });

  it('the default watcher sees a file renamed over the old one (as geoipupdate writes)', async () => {
    const sub = mkdtempSync(join(dir, 'w-'));
    const path = join(sub, 'GeoLite2-Country.mmdb');
    writeFileSync(path, firstDb());
    const db = new GeoDatabase({ path });
    try {
      const tmp = join(sub, 'GeoLite2-Country.mmdb.tmp');
      writeFileSync(tmp, new MmdbWriter().insert('81.0.0.0/8', countryRecord('NL')).build());
      const { renameSync } = await import('node:fs');
      renameSync(tmp, path);
      // Waits for the event, bounded; the outcome, not the time, is asserted.
      for (let i = 0; i < 200 && db.generation === 0; i++) await new Promise((r) => setTimeout(r, 25));
      expect(db.lookup('81.1.1.1')).toMatchObject({ country: 'NL' });
    } finally {
      db.close();
    }
  });

  it('GeoDatabases opens each path once', () => {
    const path = join(dir, 'shared.mmdb');
    writeFileSync(path, firstDb());
    const dbs = new GeoDatabases({ watch: false });
    expect(dbs.open(path)).toBe(dbs.open(join(dir, '.', 'shared.mmdb')));
    dbs.close();
  });
});

describe('geo check', () => {
  let db: GeoDatabase;
  beforeAll(() => {
    const path = join(dir, 'check.mmdb');
    writeFileSync(path, firstDb());
    db = new GeoDatabase({ path, watch: false });
  });

  it('allow-only: a listed country passes with a country finding, another is greylisted, not refused', async () => {
    const geo = geoCheck({ database: db, allow: ['de', 'FR'] });
    const ok = await geo.run(session('81.1.1.1'), ctx);
    expect(ok).toEqual({
      action: 'next',
      reason: '81.1.1.1 in DE',
      findings: [{ check: 'geo', tag: 'country:DE' }],
    });
    const miss = await geo.run(session('175.16.199.9'), ctx);
    expect(miss.action).toBe('next');
    expect(miss.findings).toEqual([
      { check: 'geo', tag: 'country:CN' },
      { check: 'geo', tag: 'not-allowed:CN', doubt: true, score: 1 },
    ]);
    // IPv6
    expect((await geo.run(session('2001:218::1'), ctx)).findings).toContainEqual({
      check: 'geo',
      tag: 'not-allowed:JP',
      doubt: true,
      score: 1,
    });
  });

  it('unknown, private and loopback addresses are no opinion, with the reason', async () => {
    const geo = geoCheck({ database: db, allow: ['DE'], action: 'reject' });
    for (const [ip, why] of [
      ['8.8.8.8', 'not-in-database'],
      ['192.168.1.1', 'not-public'],
      ['127.0.0.1', 'not-public'],
      ['::1', 'not-public'],
    ] as const) {
      const v = await geo.run(session(ip), ctx);
      expect(v).toEqual({ action: 'next', reason: expect.stringContaining(why) });
    }
    expect(await geo.run(session('garbage'), ctx)).toMatchObject({
      action: 'next',
      reason: /not an IP address/,
    });
  });

  it('rejects only when configured to, and then says so with a 5xx', async () => {
    const geo = geoCheck({ database: db, deny: ['CN'], action: 'reject' });
    const v = await geo.run(session('175.16.199.9'), ctx);
    expect(v).toMatchObject({
      action: 'reject',
      reply: { code: 554, enhanced: '5.7.1' },
      reason: /CN is denied/,
    });
    expect((await geo.run(session('81.1.1.1'), ctx)).action).toBe('next');
    const d = await geoCheck({ database: db, deny: ['CN'], action: 'defer' }).run(
      session('175.16.199.9'),
      ctx,
    );
    expect(d).toMatchObject({ action: 'defer', reply: { enhanced: '4.7.1' } });
    // Softened by core: a temporary 4xx, whatever code core picks for it.
    expect(d.action === 'defer' && Math.floor(d.reply.code / 100)).toBe(4);
  });

  it('scores countries and AS numbers for weigh(), and the registered country when there is no country', async () => {
    const geo = geoCheck({ database: db, scores: { CN: 3, DE: -1, SE: 2 }, asnScores: { AS29518: 0.5 } });
    expect((await geo.run(session('175.16.199.9'), ctx)).findings).toContainEqual({
      check: 'geo',
      tag: 'score:CN',
      score: 3,
    });
    const se = await geo.run(session('89.160.20.7'), ctx);
    expect(se.findings).toEqual([
      { check: 'geo', tag: 'country:SE' },
      { check: 'geo', tag: 'asn:29518' },
      { check: 'geo', tag: 'score:SE', score: 2 },
      { check: 'geo', tag: 'score:AS29518', score: 0.5 },
    ]);
    const w = weigh({ checks: [geo], reject: 3 });
    expect((await w.run(session('175.16.199.9'), ctx)).action).toBe('reject');
    expect((await w.run(session('81.1.1.1'), ctx)).action).toBe('next');
  });

  it('denies AS numbers', async () => {
    const geo = geoCheck({ database: db, denyAsn: [29518], action: 'score', score: 4 });
    expect((await geo.run(session('89.160.20.7'), ctx)).findings).toContainEqual({
      check: 'geo',
      tag: 'asn-denied:AS29518',
      score: 4,
    });
  });

  it('never judges authenticated users or exempt networks', async () => {
    const geo = geoCheck({ database: db, deny: ['CN'], action: 'reject', exempt: ['175.16.199.0/24'] });
    expect((await geo.run(session('175.16.199.9'), ctx)).action).toBe('next');
    const geo2 = geoCheck({ database: db, deny: ['CN'], action: 'reject' });
    expect((await geo2.run(session('175.16.199.9', { authUser: 'alice' }), ctx)).action).toBe('next');
  });

  it('works as a link of a chain: a miss at connect becomes a doubt at RCPT', async () => {
    const c = chain([geoCheck({ database: db, allow: ['DE'] })], { clock: new ManualClock(0) });
    const d = await c.evaluate(session('175.16.199.9', { stage: 'rcpt', rcptTo: 'a@example.com' }));
    expect(d.action).toBe('next');
    expect(d.findings.some((f) => f.doubt && f.tag === 'not-allowed:CN')).toBe(true);
  });

  it('refuses bad options at construction', () => {
    expect(() => geoCheck({ database: db, allow: ['DE'], deny: ['CN'] })).toThrow(TypeError);
    expect(() => geoCheck({ database: db, allow: ['Germany'] })).toThrow(/ISO 3166/);
    expect(() => geoCheck({ database: db, action: 'drop' as never })).toThrow(/action/);
    expect(() => geoCheck({ database: db, scores: { CN: 'x' as never } })).toThrow(/number/);
    expect(() => geoCheck({ database: {} as never })).toThrow(/database/);
  });
});

describe('GeoDatabase: the decoded-record cache bounded in bytes', () => {
  it('counts 64 an object, 64 + 2 a character of a string, 16 a number, keys included', () => {
    expect(decodedBytes('ab')).toBe(68);
    expect(decodedBytes(7)).toBe(16);
    expect(decodedBytes({ a: 'b' })).toBe(64 + 16 + 2 + 66);
    expect(decodedBytes([1, 2])).toBe(64 + 2 * (8 + 16));
  });

  it('holds at most cacheBytes of records: 300 records of 2 KB through 64 KiB, the newest kept', () => {
    // Before, only a count (10,000 records) bounded it, whatever their size.
    const w = new MmdbWriter({ databaseType: 'GeoLite2-City' });
    const names = (i: number) => ({ en: `${i}:${'n'.repeat(1000)}`, de: `${i}:${'m'.repeat(1000)}` });
    for (let i = 0; i < 300; i++) {
      w.insert(`${20 + (i >> 8)}.${i & 255}.0.0/16`, {
        country: { iso_code: 'DE', geoname_id: i, names: names(i) },
      });
    }
    const path = join(dir, 'big.mmdb');
    writeFileSync(path, w.build());
    const bound = 64 * 1024;
    const db = new GeoDatabase({ path, watch: false, cacheBytes: bound });
    for (let i = 0; i < 300; i++) {
      expect(db.lookup(`${20 + (i >> 8)}.${i & 255}.1.1`)).toMatchObject({ found: true, country: 'DE' });
    }
    const held = db.cached;
    expect(held.bytes).toBeLessThanOrEqual(bound);
    expect(held.bytes).toBeGreaterThan(bound / 2);
    expect(held.entries).toBeLessThan(300);
    expect(() => new GeoDatabase({ path, watch: false, cacheBytes: 0 })).toThrow(
      /cacheBytes must be a positive integer/,
    );
  });
});
