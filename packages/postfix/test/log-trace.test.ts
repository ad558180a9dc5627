import { type Check, chain, next } from '@mxguard/core';
import { type PolicyServer, startPolicyServer } from '@mxguard/postfix';
import { afterAll, describe, expect, it } from 'vitest';
import { byRecipient, memoryLogger, PolicyClient, rcptRequest } from './helpers.js';

// The decision line's trace: by default the steps that said something and how many links ran;
// with logTrace 'full' every step.
const quiet = (name: string): Check => ({ name, stage: 'rcpt', run: () => next('no opinion') });
const links = () => chain([quiet('q1'), quiet('q2'), byRecipient, quiet('q3')]);

describe('startPolicyServer logTrace', () => {
  const servers: PolicyServer[] = [];
  afterAll(async () => {
    await Promise.all(servers.map((s) => s.close()));
  });

  async function decisionsOf(logTrace: 'said' | 'full' | undefined) {
    const log = memoryLogger();
    const server = await startPolicyServer({
      listen: { host: '127.0.0.1', port: 0 },
      chain: links(),
      log,
      ...(logTrace ? { logTrace } : {}),
    });
    servers.push(server);
    const c = await PolicyClient.open(server);
    expect(await c.ask(rcptRequest({ recipient: 'reject@example.com', instance: 'r.1' }))).toMatch(/^550 /);
    expect(await c.ask(rcptRequest({ recipient: 'bob@example.com', instance: 'n.1' }))).toBe('DUNNO');
    c.close();
    const decisions = log.lines
      .filter((l) => l.msg === 'decision')
      .map((l) => l.obj as { session: string; steps: number; trace: { check: string }[] });
    return (id: string) => {
      const d = decisions.find((x) => x.session === id);
      return { steps: d?.steps, checks: d?.trace.map((s) => s.check) };
    };
  }

  it('by default logs the deciding step and the count of links', async () => {
    const line = await decisionsOf(undefined);
    expect(line('r.1')).toEqual({ steps: 3, checks: ['by-recipient'] });
    expect(line('n.1')).toEqual({ steps: 4, checks: [] });
  });

  it("'said' is the default, 'full' logs every step", async () => {
    expect((await decisionsOf('said'))('n.1')).toEqual({ steps: 4, checks: [] });
    const full = await decisionsOf('full');
    expect(full('r.1')).toEqual({ steps: 3, checks: ['q1', 'q2', 'by-recipient'] });
    expect(full('n.1')).toEqual({ steps: 4, checks: ['q1', 'q2', 'by-recipient', 'q3'] });
  });

  it('refuses a logTrace it does not know, before listening', async () => {
    await expect(
      startPolicyServer({
        listen: { host: '127.0.0.1', port: 0 },
        chain: links(),
        log: memoryLogger(),
        logTrace: 'everything' as 'full',
      }),
    ).rejects.toThrow(/startPolicyServer: logTrace must be 'said' or 'full', got "everything"/);
  });
});
