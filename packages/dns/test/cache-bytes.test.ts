import { ManualClock } from '@mxguard/core';
import { answerBytes, DnsResolver, found } from '@mxguard/dns';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TestDnsServer } from './helpers/dns-server.js';

// Issue 14: the answer cache is bounded in bytes, not only in entries (10,000 entries of TXT
// RRsets of up to 64 KiB each were allowed before). A real DNS server on loopback answers.

const server = new TestDnsServer();
const NAMES = 40;
/** Three 200-character strings a name: about 600 bytes of records, counted about 1.3 KB. */
const big = (i: number) => `big${i}.test`;

beforeAll(async () => {
  for (let i = 0; i < NAMES; i++) {
    for (const c of ['x', 'y', 'z']) server.add(big(i), { type: 'TXT', data: [`${i}${c.repeat(199)}`] });
  }
  await server.start();
});
afterAll(() => server.stop());

function resolver(cacheBytes: number) {
  return new DnsResolver({
    servers: [server.address],
    timeout: 500,
    tries: 1,
    clock: new ManualClock(0),
    cacheBytes,
  });
}

describe('the answer cache in bytes', () => {
  it('drops the least recently used answers past cacheBytes, keeps the recent ones', async () => {
    server.reset();
    const one = answerBytes(`TXT:${big(0)}`, found(['x'.repeat(600)], 300));
    // Room for about five answers of the forty.
    const r = resolver(one * 5 + 100);
    for (let i = 0; i < NAMES; i++) expect((await r.txt(big(i))).ok).toBe(true);
    // The first was dropped: asked again, the server is asked again.
    expect((await r.txt(big(0))).ok).toBe(true);
    expect(server.count(big(0), 'TXT')).toBe(2);
    // The last is still cached.
    expect((await r.txt(big(NAMES - 1))).ok).toBe(true);
    expect(server.count(big(NAMES - 1), 'TXT')).toBe(1);
  });

  it('answers, without caching, an answer larger than the whole cache', async () => {
    server.reset();
    const r = resolver(500);
    const first = await r.txt(big(1));
    const second = await r.txt(big(1));
    expect(first.ok && first.records).toHaveLength(3);
    expect(second).toEqual(first);
    expect(server.count(big(1), 'TXT')).toBe(2);
  });

  it('counts an answer by its key and records, and refuses a bound that is not positive', () => {
    expect(answerBytes('A:a.test', found(['192.0.2.1'], 60))).toBe(128 + 2 * ('A:a.test'.length + 13));
    expect(answerBytes('A:nx.test', { ok: false, error: 'notfound', detail: 'NXDOMAIN' })).toBe(
      128 + 2 * 'A:nx.test'.length,
    );
    expect(() => resolver(0)).toThrow(/cacheBytes/);
  });
});
