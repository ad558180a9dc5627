import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { type Running, startMxguard } from '../../../testing/mxguard.js';
import { RawClient } from '../../smtp/test/helpers.js';

// The limits of serve and policy from the config file (`gateway`, `policy`), as Postfix users
// write them in main.cf (durations with units), and --budget over the file's budget.
const dir = mkdtempSync(join(tmpdir(), 'mxguard-limits-config-'));
const running: Running[] = [];
afterAll(async () => {
  await Promise.all(running.map((r) => r.stop()));
});

function config(name: string, value: object): string {
  const file = join(dir, name);
  writeFileSync(
    file,
    JSON.stringify({ ourDomains: ['example.com'], ourHosts: ['mx.example.com'], ...value }),
  );
  return file;
}

async function start(command: 'serve' | 'policy', args: string[]): Promise<Running> {
  const r = await startMxguard(command, ['--offline', ...args]);
  running.push(r);
  return r;
}

describe('gateway limits from the config', () => {
  it('applies gateway.recipientLimit (452 4.5.3 past it) and gateway.budget; --budget overrides the budget', async () => {
    const file = config('gateway.json', {
      gateway: { budget: '3s', recipientLimit: 2, junkCommandLimit: 3 },
    });
    const r = await start('serve', ['--config', file, '--spool', join(dir, 'spool')]);
    expect(r.stdout()).toMatch(/^budget: 3000 ms an SMTP command/m);
    const c = await RawClient.open(r.port);
    await c.line();
    expect(await c.cmd('EHLO client.example.net')).toMatch(/^250 /);
    expect(await c.cmd('MAIL FROM:<a@sender.example.net>')).toMatch(/^250 /);
    expect(await c.cmd('RCPT TO:<u1@example.com>')).toMatch(/^250 /);
    expect(await c.cmd('RCPT TO:<u2@example.com>')).toMatch(/^250 /);
    expect(await c.cmd('RCPT TO:<u3@example.com>')).toBe('452 4.5.3 Error: too many recipients');
    for (let i = 0; i < 3; i++) expect(await c.cmd('NOOP')).toMatch(/^250 /);
    expect(await c.cmd('NOOP')).toBe('421 4.7.0 mx.example.com Error: too many errors');
    c.close();

    const flag = await start('serve', ['--config', file, '--spool', join(dir, 'spool'), '--budget', '4000']);
    expect(flag.stdout()).toMatch(/^budget: 4000 ms an SMTP command/m);
  }, 120_000);

  it('refuses a limit without a known unit, naming the key', async () => {
    const file = config('bad.json', { gateway: { sessionLifetime: '30 minutes' } });
    await expect(start('serve', ['--config', file])).rejects.toThrow(
      /config\.gateway\.sessionLifetime: a duration: whole seconds, or a number with a unit/,
    );
  }, 60_000);
});

describe('policy limits from the config', () => {
  it('applies policy.budget (the timeout= printed for Postfix follows it); --budget overrides it', async () => {
    const file = config('policy.json', { policy: { budget: '9s', maxConnections: 16 } });
    const r = await start('policy', ['--config', file]);
    expect(r.stdout()).toMatch(/^budget: 9000 ms a request/m);
    expect(r.stdout()).toMatch(/timeout=11s, default_action=DUNNO/);
    const flag = await start('policy', ['--config', file, '--budget', '5000']);
    expect(flag.stdout()).toMatch(/^budget: 5000 ms a request/m);
    expect(flag.stdout()).toMatch(/timeout=10s, default_action=DUNNO/);
  }, 120_000);
});
