import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { bindFactories, buildPolicy, ConfigError, ManualClock } from '@mxguard/core';
import type { P0fLookup } from '@mxguard/signals';
import { createSignalsEnv, signalsFactories } from '@mxguard/signals';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { countryRecord, MmdbWriter } from './helpers/mmdb-writer.js';

let dir: string;
let dbPath: string;
const env = createSignalsEnv({ clock: new ManualClock(0) });

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'mxguard-signals-config-'));
  dbPath = join(dir, 'GeoLite2-Country.mmdb');
  writeFileSync(
    dbPath,
    new MmdbWriter()
      .insert('81.0.0.0/8', countryRecord('DE'))
      .insert('175.16.199.0/24', countryRecord('CN'))
      .build(),
  );
});
afterAll(() => {
  env.close();
  rmSync(dir, { recursive: true, force: true });
});

const rcpt = (clientAddress: string) => ({ clientAddress, stage: 'rcpt' as const, rcptTo: 'a@example.com' });

describe('signalsFactories from a JSON config', () => {
  it('builds geo from {"name":"geo","database":...,"allow":[...]} and greylists a miss by default', async () => {
    const registry = bindFactories(signalsFactories, env);
    const config = JSON.parse(
      JSON.stringify({ checks: [{ name: 'geo', database: dbPath, allow: ['DE', 'FR'] }] }),
    );
    const { chain } = buildPolicy(config, registry, { clock: new ManualClock(0) });
    const cn = await chain.evaluate(rcpt('175.16.199.20'));
    expect(cn.action).toBe('next');
    expect(cn.findings).toContainEqual({ check: 'geo', tag: 'not-allowed:CN', doubt: true, score: 1 });
    expect((await chain.evaluate(rcpt('81.3.3.3'))).findings).toEqual([{ check: 'geo', tag: 'country:DE' }]);
  });

  it('honours action from the config, and exempts the site networks', async () => {
    const registry = bindFactories(signalsFactories, env);
    const { chain } = buildPolicy(
      {
        ourNetworks: ['175.16.199.16/28'],
        checks: [{ name: 'geo', database: dbPath, deny: ['CN'], action: 'reject' }],
      },
      registry,
      { clock: new ManualClock(0) },
    );
    expect((await chain.evaluate(rcpt('175.16.199.200'))).action).toBe('reject');
    expect((await chain.evaluate(rcpt('175.16.199.20'))).action).toBe('next');
  });

  it('builds os-fingerprint with a shared geo database and the combination rule', async () => {
    const p0f: P0fLookup = {
      query: async () => ({
        status: 'ok',
        host: {
          firstSeen: 0,
          lastSeen: 0,
          totalConn: 1,
          uptimeMin: 0,
          upModDays: 0,
          lastNat: 0,
          lastChg: 0,
          distance: 15,
          badSw: 0,
          osMatchQ: 0,
          osName: 'Windows',
          osFlavor: 'XP',
          httpName: '',
          httpFlavor: '',
          linkType: '',
          language: '',
        },
      }),
    };
    const registry = bindFactories(signalsFactories, { ...env, p0f });
    const { chain } = buildPolicy(
      {
        checks: [
          { name: 'os-fingerprint', database: dbPath, expectedCountries: ['DE'], combinationScore: 9 },
        ],
      },
      registry,
      { clock: new ManualClock(0) },
    );
    const d = await chain.evaluate({ ...rcpt('175.16.199.20'), rdns: { names: [] } });
    expect(d.findings).toContainEqual({ check: 'os-fingerprint', tag: 'desktop+CN+missing-ptr', score: 9 });
    expect(env.geo.open(dbPath)).toBeDefined();
  });

  it('names the problem in a bad config', () => {
    const registry = bindFactories(signalsFactories, env);
    const build = (check: Record<string, unknown>) => () =>
      buildPolicy({ checks: [{ name: 'geo', ...check }] as never }, registry);
    expect(build({})).toThrow(ConfigError);
    expect(build({})).toThrow(/database.*required/);
    expect(build({ database: join(dir, 'nope.mmdb') })).toThrow(/cannot read/);
    expect(build({ database: dbPath, allow: 'DE' })).toThrow(/list of strings/);
    expect(build({ database: dbPath, alow: ['DE'] })).toThrow(
      /config\.checks\[0\]\.alow: unknown key; did you mean "allow"\?/,
    );
    expect(build({ database: dbPath, action: 'explode' })).toThrow(/action/);
    expect(() =>
      buildPolicy(
        { checks: [{ name: 'os-fingerprint' }] },
        bindFactories(signalsFactories, createSignalsEnv()),
      ),
    ).toThrow(/socket.*required/);
    expect(() =>
      buildPolicy(
        { checks: [{ name: 'os-fingerprint', socket: '/run/p0f.sock', action: 'reject' }] },
        bindFactories(signalsFactories, createSignalsEnv()),
      ),
    ).toThrow(/never proof/);
  });
});
