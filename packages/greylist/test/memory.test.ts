import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ManualClock } from '@mxguard/core';
import { DEFAULT_POLICY, memoryStore } from '@mxguard/greylist';
import { afterAll, describe, expect, it, vi } from 'vitest';
import { testStore } from './store-suite.js';

testStore('memory', async () => memoryStore());

describe('memory store', () => {
  const dir = mkdtempSync(join(tmpdir(), 'mxg-greylist-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const T0 = 1_700_000_000_000;
  const req = (n: number) => ({ triplet: `t${n}`, client: `c${n}`, policy: DEFAULT_POLICY });

  it('survives a restart through its file: no triplet and no whitelist entry is lost', async () => {
    const file = join(dir, 'restart.json');
    const a = memoryStore({ file });
    await a.decide(req(1), T0);
    await a.decide(req(1), T0 + 300_000); // passed: counts for client c1
    await a.decide(req(2), T0 + 400_000); // new
    await a.close(); // saves
    expect(readdirSync(dir).filter((f) => f.endsWith('.tmp'))).toEqual([]);

    const b = memoryStore({ file });
    expect(await b.load()).toBe(3);
    expect(await b.inspect('t1', 'c1')).toEqual({
      triplet: { first: T0, last: T0 + 300_000, count: 2 },
      client: { count: 1, last: T0 + 300_000 },
    });
    // The pending triplet keeps its first sighting: a retry after the delay passes.
    expect(await b.decide(req(2), T0 + 700_000)).toMatchObject({ outcome: 'passed', firstPass: true });
    await b.close();
  });

  it('saves every saveInterval by itself (timer faked), and close() stops the timer', async () => {
    vi.useFakeTimers({ toFake: ['setInterval', 'clearInterval'] });
    try {
      const file = join(dir, 'periodic.json');
      const s = memoryStore({ file, saveInterval: 60_000 });
      await s.decide(req(9), T0);
      expect(existsSync(file)).toBe(false);
      const save = vi.spyOn(s, 'save');
      vi.advanceTimersByTime(60_000);
      expect(save).toHaveBeenCalledTimes(1);
      expect(await save.mock.results[0]?.value).toBe(1);
      expect(existsSync(file)).toBe(true);
      await s.close();
      expect(vi.getTimerCount()).toBe(0);
      const again = memoryStore({ file });
      expect(await again.load()).toBe(1);
    } finally {
      vi.useRealTimers();
    }
  });

  it('names its temporary file with the injected randomness, and a failed save leaves the file as it was', async () => {
    const file = join(dir, 'random.json');
    const random = (n: number) => new Uint8Array(n).fill(0xab);
    const s = memoryStore({ file, random });
    await s.decide(req(1), T0);
    expect(await s.save()).toBe(1);
    // The same bytes again: the temporary name is taken (here by a directory), so the save fails
    // before touching the target, which still holds the first save.
    mkdirSync(`${file}.${'ab'.repeat(16)}.tmp`);
    await s.decide(req(2), T0 + 1);
    await expect(s.save()).rejects.toThrow();
    const again = memoryStore({ file });
    expect(await again.load()).toBe(1); // the first save's one (new) triplet
    expect((await again.inspect('t1', 'c1')).triplet).toBeDefined();
    expect(await again.inspect('t2', 'c2')).toEqual({});
  });

  it('a missing file is an empty store; a foreign file is an error', async () => {
    const s = memoryStore({ file: join(dir, 'absent.json') });
    expect(await s.load()).toBe(0);
    const bad = join(dir, 'bad.json');
    writeFileSync(bad, JSON.stringify({ hello: 1 }));
    await expect(memoryStore({ file: bad }).load()).rejects.toThrow(/not an mxguard greylist file/);
  });

  it('is bounded: the least recently seen triplets go first', async () => {
    const s = memoryStore({ maxTriplets: 3, maxClients: 3 });
    for (let i = 0; i < 5; i++) await s.decide(req(i), T0 + i);
    expect(s.size.triplets).toBe(3);
    expect((await s.inspect('t0', 'c0')).triplet).toBeUndefined();
    expect((await s.inspect('t4', 'c4')).triplet).toBeDefined();
    expect(() => memoryStore({ maxTriplets: 0 })).toThrow(TypeError);
  });

  it('expires records by the injected clock (lru-cache perf), with no timers', async () => {
    const clock = new ManualClock(T0);
    const s = memoryStore({ clock });
    await s.decide(req(1), T0);
    clock.advance(DEFAULT_POLICY.maxAge - 1);
    expect((await s.inspect('t1', 'c1')).triplet).toBeDefined();
    clock.advance(2);
    expect((await s.inspect('t1', 'c1')).triplet).toBeUndefined();
    expect(s.size.triplets).toBe(0);
  });
});
