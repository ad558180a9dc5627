/**
 * The opt-in checks of issues 6 and 7 as a config file names them, through `mxguard check`:
 * geo (a MaxMind-format database the test writes), address-guessing (a table of users).
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { countryRecord, MmdbWriter } from '../../signals/test/helpers/mmdb-writer.js';

const bin = fileURLToPath(new URL('../dist/bin.js', import.meta.url));
const dir = mkdtempSync(join(tmpdir(), 'mxguard-check-signals-'));

function check(config: object, lines: object[]) {
  const path = join(dir, `c${Math.random().toString(36).slice(2)}.json`);
  writeFileSync(path, JSON.stringify(config));
  const r = spawnSync(process.execPath, [bin, 'check', '--offline', '--config', path], {
    input: lines.map((l) => JSON.stringify(l)).join('\n'),
    encoding: 'utf8',
    timeout: 30_000,
  });
  expect(r.status, r.stderr).toBe(0);
  return r.stdout
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as Record<string, unknown>);
}

const base = {
  helo: 'mail.example.net',
  ptr: 'mail.example.net',
  mailFrom: 'a@example.net',
  rcptTo: 'b@example.com',
};

describe('config-file checks through mxguard check', () => {
  it('geo: a denied country scores or greylists, never a 5xx unless configured; unknown addresses pass', () => {
    const db = join(dir, 'country.mmdb');
    writeFileSync(
      db,
      new MmdbWriter({ databaseType: 'GeoLite2-Country' })
        .insert('175.16.199.0/24', countryRecord('CN'))
        .insert('81.0.0.0/8', countryRecord('DE'))
        .build(),
    );
    const soft = check({ checks: [{ name: 'geo', database: db, deny: ['CN'] }, 'greylist'] }, [
      { ...base, ip: '175.16.199.5', time: 1_700_000_000 },
      { ...base, ip: '81.1.1.1', time: 1_700_000_000 },
      { ...base, ip: '192.0.2.1', time: 1_700_000_000 },
    ]);
    expect(soft[0]).toMatchObject({ action: 'defer', check: 'greylist' });
    expect(soft[1]).toMatchObject({ action: 'next' });
    expect(soft[2]).toMatchObject({ action: 'next' });
    const hard = check({ checks: [{ name: 'geo', database: db, deny: ['CN'], action: 'reject' }] }, [
      { ...base, ip: '175.16.199.5' },
    ]);
    expect(hard[0]).toMatchObject({ action: 'reject', check: 'geo' });
    expect(hard[0]?.code).toBeGreaterThanOrEqual(500);
  });

  it('address-guessing: 550 for each unknown user, then the network is locked out with a 4xx', () => {
    const cfg = { checks: [{ name: 'address-guessing', users: ['alice', 'bob', 'postmaster'] }] };
    const tries = Array.from({ length: 12 }, (_, i) => ({
      ...base,
      ip: '203.0.113.50',
      rcptTo: `guess${i}@example.com`,
      time: 1_700_000_000 + i,
    }));
    const out = check(cfg, [
      { ...base, ip: '203.0.113.50', rcptTo: 'alice@example.com', time: 1_700_000_000 },
      ...tries,
    ]);
    expect(out[0]).toMatchObject({ action: 'next' });
    expect(out[1]).toMatchObject({ action: 'reject', code: 550, check: 'address-guessing' });
    const last = out[out.length - 1]!;
    expect(last.action).toBe('defer');
    expect(last.code).toBeLessThan(500);
  });
});
