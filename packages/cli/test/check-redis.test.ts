/**
 * `mxguard check --config` naming Redis stores: two separate runs (two "MX hosts") share the
 * greylist and the reputation through a real redis-server on loopback.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type RedisServer, startRedis } from '../../greylist/test/redis-server.js';

const bin = fileURLToPath(new URL('../dist/bin.js', import.meta.url));
const dir = mkdtempSync(join(tmpdir(), 'mxguard-check-redis-'));
let redis: RedisServer;
let configPath: string;

beforeAll(async () => {
  redis = await startRedis();
  configPath = join(dir, 'config.json');
  writeFileSync(
    configPath,
    JSON.stringify({
      greylist: { store: redis.url, prefix: 'mxg-test:' },
      reputationStore: { url: redis.url, prefix: 'mxg-test:rep:' },
    }),
  );
}, 60_000);

afterAll(async () => {
  await redis?.dispose();
});

function check(lines: object[]) {
  const r = spawnSync(process.execPath, [bin, 'check', '--offline', '--config', configPath], {
    input: lines.map((l) => JSON.stringify(l)).join('\n'),
    encoding: 'utf8',
    timeout: 30_000,
  });
  return r.stdout
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as Record<string, unknown>);
}

const doubted = {
  ip: '198.51.100.20',
  helo: 'host.example.org',
  ptr: null,
  mailFrom: 'a@example.org',
  rcptTo: 'b@example.com',
};

describe('mxguard check with Redis stores', () => {
  it('one run greylists a triplet; a second run (another MX host) sees the same record and lets the retry pass', () => {
    const [first] = check([{ ...doubted, time: 1_700_000_000 }]);
    expect(first).toMatchObject({ action: 'defer', check: 'greylist' });
    const [early, late] = check([
      { ...doubted, time: 1_700_000_100 },
      { ...doubted, time: 1_700_000_400 },
    ]);
    expect(early).toMatchObject({ action: 'defer', check: 'greylist' });
    expect(late).toMatchObject({ action: 'next' });
  });

  it('a store that cannot be reached is a warning and a pass by default, never a crash or a 5xx', () => {
    const down = join(dir, 'down.json');
    writeFileSync(
      down,
      JSON.stringify({
        greylist: { store: 'redis://127.0.0.1:1/0', commandTimeout: 200 },
        reputationStore: 'redis://127.0.0.1:1/0',
        options: { 'address-guessing': { users: ['b'] } },
      }),
    );
    const r = spawnSync(process.execPath, [bin, 'check', '--offline', '--config', down], {
      input: JSON.stringify({ ...doubted, ip: '198.51.100.21' }),
      encoding: 'utf8',
      // Each store is waited for up to 5 s before the run goes on without it; a loaded machine
      // needs more than the sum.
      timeout: 50_000,
    });
    const out = JSON.parse(r.stdout) as { action: string; code?: number };
    expect(r.status, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/reputation store failed/);
    expect(out.action).not.toBe('reject');
    expect(out.code ?? 0).toBeLessThan(500);
  }, 60_000);
});
