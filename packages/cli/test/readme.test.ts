import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { FakeResolver } from '@mxguard/dns';
import { describe, expect, it } from 'vitest';
import { myPolicy } from '../../../examples/policy.js';
import { presetPolicy } from '../../../examples/preset.js';

const root = new URL('../../../', import.meta.url);

describe('the README example', () => {
  it('is examples/policy.ts, word for word', () => {
    const readme = readFileSync(new URL('README.md', root), 'utf8');
    const example = readFileSync(new URL('examples/policy.ts', root), 'utf8');
    expect(readme).toContain(`\`\`\`ts\n${example}\`\`\``);
  });

  it('runs: clean mail passes, a listed client is refused, a dynamic one is greylisted, relaying is refused', async () => {
    const dns = new FakeResolver({
      '9.113.0.203.zen.spamhaus.org': {
        A: ['127.0.0.2'],
        TXT: ['https://www.spamhaus.org/query/ip/203.0.113.9'],
      },
      'example.net': { MX: [{ priority: 10, exchange: 'mx.example.net' }] },
      'mx.example.net': { A: ['192.0.2.25'] },
    });
    const policy = myPolicy(dns);
    const base = {
      clientAddress: '192.0.2.7',
      helo: 'mail.example.net',
      mailFrom: 'a@example.net',
      rcptTo: 'b@example.com',
      stage: 'rcpt' as const,
    };
    expect((await policy.evaluate(base)).action).toBe('next');
    const listed = await policy.evaluate({ ...base, clientAddress: '203.0.113.9' });
    expect([listed.action, listed.check, listed.reply?.code]).toEqual(['reject', 'dnsbl', 554]);
    expect(listed.reply?.text).toContain('https://example.com/mail-help');
    const dynamic = await policy.evaluate({
      ...base,
      clientAddress: '73.12.34.56',
      rdns: { names: ['c-73-12-34-56.hsd1.ca.comcast.net'], verified: 'c-73-12-34-56.hsd1.ca.comcast.net' },
    });
    expect([dynamic.action, dynamic.check]).toEqual(['defer', 'greylist']);
    const relay = await policy.evaluate({ ...base, rcptTo: 'x@elsewhere.org' });
    expect([relay.action, relay.check]).toEqual(['reject', 'relay']);
    const bulk = await policy.evaluate({ ...base, mailFrom: 'x@bulk.example.net' });
    expect([bulk.action, bulk.check, bulk.reply?.code]).toEqual(['defer', 'no-bulk', 450]);
  });

  it('`pnpm example policy` runs it from the repository root, importing the built packages by name', () => {
    // What a reader who copies the example next to the README gets: tsx, and @mxguard/* resolved
    // through the root's node_modules (root devDependencies on the workspace packages), not
    // through the test's aliases. Needs the build that `pnpm test` runs first.
    const out = execFileSync(process.execPath, ['--import', 'tsx', 'examples/run.ts', 'policy'], {
      cwd: fileURLToPath(root),
      encoding: 'utf8',
      env: { ...process.env, NODE_NO_WARNINGS: '1' },
      timeout: 60_000,
    });
    expect(out.trim().split('\n')).toEqual([
      'clean mail: next: (no opinion)',
      expect.stringMatching(/^a listed client: reject by dnsbl: 554 5\.7\.1 .*zen\.spamhaus\.org/),
      expect.stringMatching(/^a bulk sender: defer by no-bulk: 450 4\.7\.1 Not today, please try tomorrow/),
      expect.stringMatching(
        /^relaying: reject by relay: 554 5\.7\.1 <x@elsewhere\.org>: Relay access denied/,
      ),
    ]);
  });
});

describe('the preset example of docs/adapters/smtp-server.md', () => {
  it('is examples/preset.ts, word for word', () => {
    const doc = readFileSync(new URL('docs/adapters/smtp-server.md', root), 'utf8');
    const example = readFileSync(new URL('examples/preset.ts', root), 'utf8');
    expect(doc).toContain(`\`\`\`ts\n${example}\`\`\``);
  });

  it('runs: every check of the preset is in the chain or listed, with its reason, as off', async () => {
    const dns = new FakeResolver({
      '9.113.0.203.zen.spamhaus.org': { A: ['127.0.0.2'] },
      'example.net': { MX: [{ priority: 10, exchange: 'mx.example.net' }] },
      'mx.example.net': { A: ['192.0.2.25'] },
    });
    const policy = presetPolicy(dns);
    const names = policy.chain.links.map((l) => l.check.name);
    expect(names).toEqual(expect.arrayContaining(['dnsbl', 'sender-domain', 'greylist', 'relay']));
    expect(policy.off.map((o) => o.name).sort()).toEqual(['address-guessing', 'callout', 'reputation']);
    const listed = await policy.chain.evaluate({
      clientAddress: '203.0.113.9',
      helo: 'mail.example.net',
      mailFrom: 'a@example.net',
      rcptTo: 'b@example.com',
      stage: 'rcpt',
      rdns: { names: ['mail.example.net'], verified: 'mail.example.net' },
    });
    expect([listed.action, listed.check]).toEqual(['reject', 'dnsbl']);
  });
});
