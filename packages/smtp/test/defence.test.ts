/**
 * The gateway's connection defence on the wire (raw sockets on loopback): per-client, rate and
 * total connection limits with Postfix's 421 4.7.0, our networks exempt, the messages-per-connection
 * limit, and the greeting pause that catches clients that talk first.
 */
import { chain, ManualClock, pipeliningCheck, type Session } from '@mxguard/core';
import { ConnectionLimits, type Gateway, type GatewayOptions, startGateway } from '@mxguard/smtp';
import { afterEach, describe, expect, it } from 'vitest';
import { storeMemory } from '../../../testing/heap.js';
import { MemoryLogger, RawClient, tempDir } from './helpers.js';

const open: RawClient[] = [];
const gateways: Gateway[] = [];
const dirs: { remove: () => Promise<void> }[] = [];

afterEach(async () => {
  for (const c of open.splice(0)) c.close();
  for (const g of gateways.splice(0)) await g.close();
  for (const d of dirs.splice(0)) await d.remove();
});

async function gateway(over: Partial<GatewayOptions> = {}) {
  const log = new MemoryLogger();
  const spool = await tempDir('mxguard-defence-');
  dirs.push(spool);
  const flags: string[] = [];
  const gw = await startGateway({
    chain: chain([pipeliningCheck()]),
    log,
    spoolDir: spool.dir,
    port: 0,
    onFlag: (_s, f) => flags.push(f),
    ...over,
  });
  gateways.push(gw);
  return { gw, log, flags };
}

/** Connects and returns the client with the first reply line (greeting or refusal). */
async function connectLine(port: number): Promise<{ c: RawClient; line: string }> {
  const c = await RawClient.open(port);
  open.push(c);
  return { c, line: await c.line() };
}

async function closed(c: RawClient): Promise<boolean> {
  for (let i = 0; i < 50 && !c.closed; i++) await new Promise((r) => setTimeout(r, 20));
  return c.closed;
}

describe('connection limits (anvil)', () => {
  it('one client cannot take every slot: 25 connections from one address, 20 greeted, 5 refused by the per-client limit', async () => {
    const { gw, log, flags } = await gateway();
    const lines: string[] = [];
    for (let i = 0; i < 25; i++) lines.push((await connectLine(gw.port)).line);
    expect(lines.filter((l) => l.startsWith('220 ')).length).toBe(20);
    const refused = lines.filter((l) => !l.startsWith('220 '));
    expect(refused).toEqual(
      Array(5).fill('421 4.7.0 mx.example.com Error: too many connections from 127.0.0.1'),
    );
    expect(log.lines.filter((l) => l.obj.check === 'connection-limit').length).toBe(5);
    expect(flags.filter((f) => f === 'connectionLimit').length).toBe(5);
    // A slot given back is a slot for the next connection.
    const last = open[19] as RawClient;
    last.write('QUIT\r\n');
    expect(await closed(last)).toBe(true);
    await new Promise((r) => setTimeout(r, 50));
    expect((await connectLine(gw.port)).line).toMatch(/^220 /);
  });

  it('our networks are exempt from the per-client limit', async () => {
    const { gw } = await gateway({ connectionLimits: { perClient: 2 }, ourNetworks: ['127.0.0.0/8'] });
    for (let i = 0; i < 4; i++) expect((await connectLine(gw.port)).line).toMatch(/^220 /);
  });

  it('the total limit refuses with the same code once every slot is taken', async () => {
    const { gw } = await gateway({ maxClients: 2, ourNetworks: ['127.0.0.0/8'] });
    expect((await connectLine(gw.port)).line).toMatch(/^220 /);
    expect((await connectLine(gw.port)).line).toMatch(/^220 /);
    const third = await connectLine(gw.port);
    expect(third.line).toBe('421 4.7.0 mx.example.com Error: too many connections, try again later');
    expect(await closed(third.c)).toBe(true);
  });

  it('the rate limit counts new connections a minute, on the injected clock', async () => {
    const clock = new ManualClock(1_700_000_000_000);
    const { gw } = await gateway({ clock, connectionLimits: { ratePerMinute: 3 } });
    for (let i = 0; i < 3; i++) {
      const { c, line } = await connectLine(gw.port);
      expect(line).toMatch(/^220 /);
      c.write('QUIT\r\n');
      await closed(c);
    }
    expect((await connectLine(gw.port)).line).toBe(
      '421 4.7.0 mx.example.com Error: too many connections from 127.0.0.1',
    );
    clock.advance(60_000);
    expect((await connectLine(gw.port)).line).toMatch(/^220 /);
  });

  it('ConnectionLimits keys IPv6 clients by /64 and refuses bad limits', () => {
    const clock = new ManualClock(0);
    const l = new ConnectionLimits({ perClient: 1 }, clock);
    expect(l.admit('a', '2001:db8:1:2::1')).toBeUndefined();
    expect(l.admit('b', '2001:db8:1:2::ffff')).toBe('per-client');
    expect(l.admit('c', '2001:db8:1:3::1')).toBeUndefined();
    l.close('a');
    l.close('a'); // twice is harmless
    expect(l.admit('d', '2001:db8:1:2::2')).toBeUndefined();
    expect(l.open).toBe(2);
    expect(() => new ConnectionLimits({ perClient: -1 }, clock)).toThrow(/perClient/);
  });

  it('remembers at most maxTracked clients, about 340 bytes each: heap measured, the newest kept', async () => {
    // 100,000 clients (distinct IPv6 /64s, the longest key anvil makes) through room for 10,000, in
    // a process of its own, heap after a full GC. A key is at most an IPv6 /64, so the count bounds
    // the bytes: measured about 340 bytes a client, 512 allowed here (50% margin), so the default
    // 100,000 is about 34 MB.
    const tracked = 10_000;
    const m = await storeMemory('anvil', tracked, 1);
    expect(m.inserted).toBe(10 * tracked);
    expect(m.held.entries).toBe(tracked);
    expect(m.after - m.before).toBeLessThan(tracked * 512);
    expect(m.newest).toBe(true);
    expect(m.oldest).toBe(false);
  }, 150_000);
});

describe('messages per connection', () => {
  it('the transaction past the limit gets 421 4.7.0 and the connection ends', async () => {
    const { gw } = await gateway({ maxMessagesPerConnection: 2 });
    const { c } = await connectLine(gw.port);
    expect(await c.cmd('EHLO mail.example.net')).toMatch(/^250 /);
    for (let i = 0; i < 2; i++) {
      expect(await c.cmd('MAIL FROM:<a@example.net>')).toMatch(/^250 /);
      expect(await c.cmd('RSET')).toMatch(/^250 /);
    }
    expect(await c.cmd('MAIL FROM:<a@example.net>')).toBe(
      '421 4.7.0 mx.example.com Error: too many messages in one session',
    );
    expect(await closed(c)).toBe(true);
  });
});

describe('greeting pause (pregreet)', () => {
  it('a client that talks during the pause is caught and refused at RCPT', async () => {
    const { gw } = await gateway({ greetPause: { ms: 400 } });
    const c = await RawClient.open(gw.port);
    open.push(c);
    c.write('EHLO bot.example.net\r\n');
    expect(await c.line()).toMatch(/^220 /);
    expect(await c.line()).toMatch(/^250 /);
    expect(await c.cmd('MAIL FROM:<a@example.net>')).toMatch(/^250 /);
    expect(await c.cmd('RCPT TO:<u@example.com>')).toBe(
      '554 5.5.0 Error: SMTP protocol violation: talked before the greeting (pipelining)',
    );
  });

  it('with `doubted`, only the clients it names wait; the others are served as usual', async () => {
    const asked: Session[] = [];
    const { gw } = await gateway({
      greetPause: {
        ms: 400,
        doubted: async (s) => {
          asked.push(s);
          return false;
        },
      },
    });
    const { c, line } = await connectLine(gw.port);
    expect(line).toMatch(/^220 /);
    expect(asked.map((s) => s.clientAddress)).toEqual(['127.0.0.1']);
    expect(await c.cmd('EHLO mail.example.net')).toMatch(/^250 /);
  });
});
