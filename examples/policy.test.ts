/**
 * A unit test of the README policy, as you would write one for your own: DNS answered from a table
 * (FakeResolver, no network) and time moved by hand (ManualClock, no sleeps). `pnpm example test`
 * runs it with vitest.
 */
import { chain, ManualClock } from '@mxguard/core';
import { FakeResolver } from '@mxguard/dns';
import { greylistCheck, memoryStore } from '@mxguard/greylist';
import { describe, expect, it } from 'vitest';
import { myPolicy } from './policy.js';

const session = {
  clientAddress: '192.0.2.7',
  helo: 'mail.example.net',
  mailFrom: 'a@example.net',
  rcptTo: 'b@example.com',
  stage: 'rcpt' as const,
};
const zone = {
  'example.net': { MX: [{ priority: 10, exchange: 'mx.example.net' }] },
  'mx.example.net': { A: ['192.0.2.25'] },
};

describe('the README policy', () => {
  it('accepts clean mail and refuses relaying', async () => {
    const policy = myPolicy(new FakeResolver(zone));
    expect((await policy.evaluate(session)).action).toBe('next');
    const relay = await policy.evaluate({ ...session, rcptTo: 'x@elsewhere.org' });
    expect([relay.action, relay.check, relay.reply?.code]).toEqual(['reject', 'relay', 554]);
  });

  it('refuses a client the DNS list names, and never answers a DNS failure with a 5xx', async () => {
    const dns = new FakeResolver({ ...zone, '9.113.0.203.zen.spamhaus.org': { A: ['127.0.0.2'] } });
    const policy = myPolicy(dns);
    const listed = await policy.evaluate({ ...session, clientAddress: '203.0.113.9' });
    expect([listed.action, listed.check]).toEqual(['reject', 'dnsbl']);
    dns.fail('9.113.0.203.zen.spamhaus.org', 'A', 'temporary');
    const failed = await policy.evaluate({ ...session, clientAddress: '203.0.113.9' });
    expect(failed.reply?.code ?? 250).toBeLessThan(500);
  });
});

describe('greylisting with a manual clock', () => {
  it('defers a new triplet, still defers it too early, lets it through after the delay', async () => {
    const clock = new ManualClock(1_800_000_000_000);
    const store = memoryStore({ clock, maxTriplets: 1000 });
    const policy = chain([greylistCheck({ store }, { mode: 'all' })], { clock });
    expect((await policy.evaluate(session)).action).toBe('defer');
    clock.advance(60_000);
    expect((await policy.evaluate(session)).action).toBe('defer');
    clock.advance(10 * 60_000);
    expect((await policy.evaluate(session)).action).not.toBe('defer');
  });
});
