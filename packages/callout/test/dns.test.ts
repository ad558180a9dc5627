import { type CalloutResolver, callout, MemoryCalloutStore, type Probe } from '@mxguard/callout';
import { ManualClock, silentLogger } from '@mxguard/core';
import { FakeResolver, type Resolver } from '@mxguard/dns';
import { describe, expect, it } from 'vitest';

// @mxguard/dns's Resolver is the callout's resolver as it is: this assignment is the type test.
const asCallout = (r: Resolver): CalloutResolver => r;

describe('callout with @mxguard/dns', () => {
  it('takes the MX of the listed domain from the Resolver, in priority order, and probes nothing else', async () => {
    const dns = new FakeResolver({
      'forged.example': {
        MX: [
          { priority: 20, exchange: 'backup.forged.example' },
          { priority: 10, exchange: 'mx.forged.example' },
        ],
      },
      'mx.forged.example': { A: ['192.0.2.25'], AAAA: ['2001:db8::25'] },
      'backup.forged.example': { A: ['198.51.100.25'] },
    });
    const seen: string[][] = [];
    const probe: Probe = async (targets) => {
      seen.push(targets.map((t) => `${t.host}[${t.address}]`));
      return { status: 'unknown-user', text: '550 5.1.1 no such user' };
    };
    const clock = new ManualClock(1_700_000_000_000);
    const check = callout({
      domains: ['forged.example'],
      store: new MemoryCalloutStore(),
      clock,
      resolver: asCallout(dns),
      probe,
    });
    const v = await check.run(
      { clientAddress: '203.0.113.5', stage: 'mail', mailFrom: 'ghost@Forged.Example' },
      { clock, log: silentLogger, findings: [] },
    );
    expect(v.action).toBe('defer');
    expect(seen).toEqual([
      [
        'mx.forged.example[192.0.2.25]',
        'mx.forged.example[2001:db8::25]',
        'backup.forged.example[198.51.100.25]',
      ],
    ]);
    expect(dns.calls.map((c) => `${c.type} ${c.name}`)).toContain('MX forged.example');
  });

  it('an MX lookup that fails temporarily is a 4xx, never a 5xx', async () => {
    const dns = new FakeResolver({});
    dns.fail('forged.example', 'MX', 'temporary');
    const clock = new ManualClock(1);
    const check = callout({
      domains: ['forged.example'],
      store: new MemoryCalloutStore(),
      clock,
      resolver: dns,
      rejectCode: 550,
      probe: async () => ({ status: 'unknown-user', text: 'x' }),
    });
    const v = await check.run(
      { clientAddress: '203.0.113.5', stage: 'mail', mailFrom: 'ghost@forged.example' },
      { clock, log: silentLogger, findings: [] },
    );
    expect(v.action).toBe('defer');
    if (v.action !== 'next') expect(v.reply.code).toBe(450);
  });

  it('a resolver that throws is a temporary failure, not a crash', async () => {
    const clock = new ManualClock(1);
    const boom = async (): Promise<never> => {
      throw new Error('resolver exploded');
    };
    const check = callout({
      domains: ['forged.example'],
      store: new MemoryCalloutStore(),
      clock,
      resolver: { a: boom, aaaa: boom, mx: boom },
      probe: async () => ({ status: 'exists', text: 'x' }),
    });
    const v = await check.run(
      { clientAddress: '203.0.113.5', stage: 'mail', mailFrom: 'ghost@forged.example' },
      { clock, log: silentLogger, findings: [] },
    );
    expect(v.action).toBe('defer');
    if (v.action !== 'next') expect(v.reply.code).toBe(450);
  });
});
