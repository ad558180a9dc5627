import { mkdtempSync, rmSync } from 'node:fs';
import type { Server, Socket } from 'node:net';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ManualClock } from '@mxguard/core';
import {
  decodeP0fResponse,
  encodeP0fQuery,
  P0F_QUERY_MAGIC,
  P0F_QUERY_SIZE,
  P0F_RESPONSE_MAGIC,
  P0F_RESPONSE_SIZE,
  P0fClient,
} from '@mxguard/signals';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

/** A p0f response as p0f 3's api.c lays it out (little endian: these machines are x86/arm64 LE). */
function response(status: number, host: Partial<Record<string, number | string>> = {}): Buffer {
  const b = Buffer.alloc(P0F_RESPONSE_SIZE);
  b.writeUInt32LE(P0F_RESPONSE_MAGIC, 0);
  b.writeUInt32LE(status, 4);
  const u32 = ['firstSeen', 'lastSeen', 'totalConn', 'uptimeMin', 'upModDays', 'lastNat', 'lastChg'];
  for (const [i, k] of u32.entries()) b.writeUInt32LE(Number(host[k] ?? 0), 8 + 4 * i);
  b.writeInt16LE(Number(host.distance ?? -1), 36);
  b[38] = Number(host.badSw ?? 0);
  b[39] = Number(host.osMatchQ ?? 0);
  ['osName', 'osFlavor', 'httpName', 'httpFlavor', 'linkType', 'language'].forEach((k, i) => {
    b.write(String(host[k] ?? '').slice(0, 31), 40 + 32 * i, 'latin1');
  });
  return b;
}

describe('p0f wire format', () => {
  it('encodes IPv4 left-aligned and IPv6 in network order, with the native-endian magic', () => {
    const q4 = encodeP0fQuery('192.0.2.7', true);
    expect(q4?.length).toBe(P0F_QUERY_SIZE);
    expect(q4?.readUInt32LE(0)).toBe(P0F_QUERY_MAGIC);
    expect(q4?.[4]).toBe(4);
    expect([...(q4?.subarray(5) ?? [])]).toEqual([192, 0, 2, 7, ...new Array(12).fill(0)]);
    // IPv4-mapped IPv6 (a dual-stack server's view of an IPv4 client) is asked as IPv4.
    expect(encodeP0fQuery('::ffff:192.0.2.7', true)).toEqual(q4);
    const q6 = encodeP0fQuery('2001:db8::1', false);
    expect(q6?.readUInt32BE(0)).toBe(P0F_QUERY_MAGIC);
    expect(q6?.[4]).toBe(6);
    expect(q6?.subarray(5).toString('hex')).toBe('20010db8000000000000000000000001');
    expect(encodeP0fQuery('not-an-ip')).toBeUndefined();
  });

  it('decodes every field of an OK answer', () => {
    const r = decodeP0fResponse(
      response(0x10, {
        firstSeen: 1700000000,
        lastSeen: 1700000100,
        totalConn: 3,
        uptimeMin: 42,
        upModDays: 49,
        lastNat: 0,
        lastChg: 5,
        distance: 11,
        badSw: 1,
        osMatchQ: 2,
        osName: 'Windows',
        osFlavor: '7 or 8',
        httpName: 'Firefox',
        httpFlavor: '10.x or newer',
        linkType: 'DSL',
        language: 'English',
      }),
      true,
    );
    expect(r).toEqual({
      status: 'ok',
      host: {
        firstSeen: 1700000000,
        lastSeen: 1700000100,
        totalConn: 3,
        uptimeMin: 42,
        upModDays: 49,
        lastNat: 0,
        lastChg: 5,
        distance: 11,
        badSw: 1,
        osMatchQ: 2,
        osName: 'Windows',
        osFlavor: '7 or 8',
        httpName: 'Firefox',
        httpFlavor: '10.x or newer',
        linkType: 'DSL',
        language: 'English',
      },
    });
  });

  it('decodes no-match, bad query, garbage and short answers to no-match or unknown, never throwing', () => {
    expect(decodeP0fResponse(response(0x20), true)).toEqual({ status: 'no-match' });
    expect(decodeP0fResponse(response(0x00), true)).toMatchObject({ status: 'unknown', reason: /bad query/ });
    expect(decodeP0fResponse(response(0x77), true)).toMatchObject({
      status: 'unknown',
      reason: /status 0x77/,
    });
    expect(decodeP0fResponse(Buffer.alloc(232, 0xaa), true)).toMatchObject({
      status: 'unknown',
      reason: /magic/,
    });
    expect(decodeP0fResponse(Buffer.alloc(3), true)).toMatchObject({ status: 'unknown', reason: /short/ });
    expect(decodeP0fResponse(response(0x10).subarray(0, 100), true)).toMatchObject({
      status: 'unknown',
      reason: /short/,
    });
    // distance -1 (no data) is signed; a string without NUL is cut at 32 bytes, control bytes dropped.
    const b = response(0x10, { distance: -1 });
    b.fill(0x41, 40, 72);
    b[41] = 0x07;
    const r = decodeP0fResponse(b, true);
    expect(r.status === 'ok' && r.host.distance).toBe(-1);
    expect(r.status === 'ok' && r.host.osName).toBe('A'.repeat(31));
  });
});

describe('P0fClient against a fake p0f socket', () => {
  let dir: string;
  let server: Server;
  const sockets = new Set<Socket>();
  /** What the fake answers per address (hex of the 17 address bytes), or how it misbehaves. */
  let behaviour: (query: Buffer, socket: Socket) => void;
  const seen: Buffer[] = [];
  let path: string;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'mxguard-p0f-fake-'));
    path = join(dir, 'p0f.sock');
    server = createServer((s) => {
      sockets.add(s);
      s.on('close', () => sockets.delete(s));
      let buf = Buffer.alloc(0);
      s.on('data', (d) => {
        buf = Buffer.concat([buf, d]);
        // Like p0f: any number of fixed-length queries on one connection.
        while (buf.length >= P0F_QUERY_SIZE) {
          const q = buf.subarray(0, P0F_QUERY_SIZE);
          buf = buf.subarray(P0F_QUERY_SIZE);
          seen.push(Buffer.from(q));
          behaviour(q, s);
        }
      });
      s.on('error', () => {});
    });
    await new Promise<void>((r) => server.listen(path, r));
  });
  afterAll(async () => {
    for (const s of sockets) s.destroy();
    await new Promise<void>((r) => server.close(() => r()));
    rmSync(dir, { recursive: true, force: true });
  });

  it('asks and decodes, in one write of 21 bytes', async () => {
    seen.length = 0;
    behaviour = (q, s) => {
      const ip = [...q.subarray(5, 9)].join('.');
      s.write(ip === '198.51.100.9' ? response(0x10, { osName: 'Windows', distance: 14 }) : response(0x20));
    };
    const c = new P0fClient({ socketPath: path, cacheMs: 0 });
    const a = await c.query('198.51.100.9');
    expect(a).toMatchObject({ status: 'ok', host: { osName: 'Windows', distance: 14 } });
    expect(seen[0]?.readUInt32LE(0)).toBe(P0F_QUERY_MAGIC);
    expect(await c.query('198.51.100.10')).toEqual({ status: 'no-match' });
  });

  it('reads an answer that arrives in pieces', async () => {
    behaviour = (_q, s) => {
      const r = response(0x10, { osName: 'Linux', osFlavor: '3.11 and newer' });
      s.write(r.subarray(0, 5));
      setImmediate(() => s.write(r.subarray(5, 150)));
      setTimeout(() => s.write(r.subarray(150)), 5);
    };
    const c = new P0fClient({ socketPath: path, cacheMs: 0 });
    expect(await c.query('203.0.113.1')).toMatchObject({
      status: 'ok',
      host: { osFlavor: '3.11 and newer' },
    });
  });

  it('a silent p0f is unknown after the timeout, not an error', async () => {
    behaviour = () => {};
    const c = new P0fClient({ socketPath: path, timeoutMs: 50, cacheMs: 0 });
    expect(await c.query('203.0.113.2')).toEqual({ status: 'unknown', reason: 'timeout after 50 ms' });
  });

  it('a p0f that hangs up early or answers garbage is unknown; a hang-up after a no-match header is no-match', async () => {
    const c = new P0fClient({ socketPath: path, cacheMs: 0 });
    behaviour = (_q, s) => s.destroy();
    expect(await c.query('203.0.113.3')).toMatchObject({ status: 'unknown' });
    behaviour = (_q, s) => s.end(response(0x10).subarray(0, 40));
    expect(await c.query('203.0.113.3')).toMatchObject({ status: 'unknown', reason: /short/ });
    behaviour = (_q, s) => s.end(response(0x20).subarray(0, 8));
    expect(await c.query('203.0.113.3')).toEqual({ status: 'no-match' });
    behaviour = (_q, s) => s.write(Buffer.alloc(232, 0x55));
    expect(await c.query('203.0.113.3')).toMatchObject({ status: 'unknown', reason: /magic/ });
  });

  it('no socket at the path is unknown', async () => {
    const c = new P0fClient({ socketPath: join(dir, 'nothing-here.sock') });
    expect(await c.query('203.0.113.4')).toMatchObject({ status: 'unknown', reason: /ENOENT/ });
    expect(await c.query('bogus')).toEqual({ status: 'unknown', reason: 'not an IP address' });
  });

  it('caches OK answers for cacheMs of the injected clock, never no-match', async () => {
    seen.length = 0;
    let os = 'Windows';
    behaviour = (q, s) => s.write(q[8] === 5 ? response(0x20) : response(0x10, { osName: os }));
    const clock = new ManualClock(0);
    const c = new P0fClient({ socketPath: path, cacheMs: 1000, clock });
    expect(await c.query('203.0.113.6')).toMatchObject({ host: { osName: 'Windows' } });
    os = 'Linux';
    clock.advance(999);
    expect(await c.query('203.0.113.6')).toMatchObject({ host: { osName: 'Windows' } });
    expect(seen.length).toBe(1);
    clock.advance(1);
    expect(await c.query('203.0.113.6')).toMatchObject({ host: { osName: 'Linux' } });
    await c.query('203.0.113.5');
    await c.query('203.0.113.5');
    expect(seen.length).toBe(4);
  });

  it('bounds concurrency: queries beyond maxConcurrent wait, beyond maxQueued are unknown (busy)', async () => {
    let inFlight = 0;
    let peak = 0;
    const pending: (() => void)[] = [];
    behaviour = (_q, s) => {
      inFlight++;
      peak = Math.max(peak, inFlight);
      pending.push(() => {
        inFlight--;
        s.write(response(0x20));
      });
    };
    const c = new P0fClient({
      socketPath: path,
      maxConcurrent: 2,
      maxQueued: 3,
      cacheMs: 0,
      timeoutMs: 5000,
    });
    const qs = Array.from({ length: 6 }, (_, i) => c.query(`203.0.113.${20 + i}`));
    // The sixth does not fit: 2 in flight + 3 queued.
    await expect(qs[5]).resolves.toEqual({ status: 'unknown', reason: 'p0f client busy' });
    // Both slots fill before anything is answered; then answer one at a time.
    while (pending.length < 2) await new Promise((r) => setTimeout(r, 1));
    let answered = 0;
    while (answered < 5) {
      while (pending.length === 0) await new Promise((r) => setTimeout(r, 1));
      pending.shift()?.();
      answered++;
    }
    const all = await Promise.all(qs.slice(0, 5));
    expect(all.every((a) => a.status === 'no-match')).toBe(true);
    expect(peak).toBe(2);
  });

  it('refuses bad options', () => {
    expect(() => new P0fClient({ socketPath: '' })).toThrow(TypeError);
    expect(() => new P0fClient({ socketPath: path, timeoutMs: 0 })).toThrow(TypeError);
  });
});
