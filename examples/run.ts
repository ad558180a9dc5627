/**
 * `pnpm example <name>`: runs one example of this directory on loopback-free, offline data and
 * prints what it decided. `pnpm example` alone lists them. The packages are imported by name, as a
 * user's code imports them (the built packages, linked at the repository root).
 */
import { FakeResolver } from '@mxguard/dns';
import { myPolicy } from './policy.js';

const examples: Record<string, { about: string; run: () => Promise<void> }> = {
  policy: {
    about: 'examples/policy.ts (the README policy) judging four sessions, with DNS answered from a table',
    async run() {
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
      const sessions = {
        'clean mail': base,
        'a listed client': { ...base, clientAddress: '203.0.113.9' },
        'a bulk sender': { ...base, mailFrom: 'x@bulk.example.net' },
        relaying: { ...base, rcptTo: 'x@elsewhere.org' },
      };
      for (const [what, session] of Object.entries(sessions)) {
        const d = await policy.evaluate(session);
        const r = d.reply ? `${d.reply.code} ${d.reply.enhanced} ${d.reply.text}` : '(no opinion)';
        process.stdout.write(`${what}: ${d.action}${d.check ? ` by ${d.check}` : ''}: ${r}\n`);
      }
    },
  },
};

const name = process.argv[2];
const example = name === undefined ? undefined : examples[name];
if (!example) {
  process.stdout.write(`usage: pnpm example <name>\n`);
  for (const [n, e] of Object.entries(examples)) process.stdout.write(`  ${n}: ${e.about}\n`);
  process.exitCode = name === undefined ? 0 : 2;
} else {
  await example.run();
}
