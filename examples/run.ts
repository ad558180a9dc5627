/**
 * `pnpm example <name>`: runs one example of this directory on loopback, with DNS answered from a
 * table (offline), and prints what it decided. `pnpm example` alone lists them. The packages are imported by name, as a
 * user's code imports them (the built packages, linked at the repository root).
 */
import { spawn, spawnSync } from 'node:child_process';
import { cpSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { FakeResolver } from '@mxguard/dns';
import { freePort } from '../testing/net.js';
import { startGateway } from './gateway.js';
import { myPolicy } from './policy.js';
import { policyRequest, startPolicy } from './postfix.js';

/** The table the examples' DNS answers from: one listed client, one sender domain with an MX. */
function exampleDns(): FakeResolver {
  return new FakeResolver({
    '9.113.0.203.zen.spamhaus.org': {
      A: ['127.0.0.2'],
      TXT: ['https://www.spamhaus.org/query/ip/203.0.113.9'],
    },
    'example.net': { MX: [{ priority: 10, exchange: 'mx.example.net' }] },
    'mx.example.net': { A: ['192.0.2.25'] },
  });
}

/**
 * Writes each line of `script` after each complete reply the server sends (a reply is complete at
 * a line with a space after the code; a policy answer at an empty line), and resolves with the
 * replies once the server closes the connection. `clientFirst`: the client speaks first (the
 * policy protocol), not the server (SMTP's greeting).
 */
function converse(port: number, script: string[], end: RegExp, clientFirst = false): Promise<string[]> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1');
    const replies: string[] = [];
    let buffer = '';
    socket.setEncoding('utf8');
    socket.setTimeout(10_000, () => socket.destroy(new Error('no answer within 10 s')));
    socket.on('data', (data: string) => {
      buffer += data;
      for (let m = end.exec(buffer); m; m = end.exec(buffer)) {
        replies.push(m[1] ?? m[0]);
        buffer = buffer.slice(m.index + m[0].length);
        const next = script.shift();
        if (next === undefined) socket.end();
        else socket.write(next);
      }
    });
    socket.on('connect', () => {
      if (clientFirst) socket.write(script.shift() ?? '');
    });
    socket.on('error', reject);
    socket.on('close', () => resolve(replies));
  });
}

/** One SMTP conversation: each line of `script` after each reply, printed as `C:` and `S:` lines. */
async function smtpConversation(port: number, script: string[]): Promise<void> {
  const replies = await converse(
    port,
    script.map((l) => `${l}\r\n`),
    /^(\d{3} [^\r\n]*)\r\n/m,
  );
  process.stdout.write(`S: ${replies[0]}\n`);
  for (const [i, r] of replies.slice(1).entries()) {
    process.stdout.write(`C: ${script[i]?.split('\r\n')[0]}\nS: ${r}\n`);
  }
}

const examples: Record<string, { about: string; run: () => Promise<void> }> = {
  policy: {
    about: 'examples/policy.ts (the README policy) judging four sessions, with DNS answered from a table',
    async run() {
      const policy = myPolicy(exampleDns());
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
  gateway: {
    about: 'examples/gateway.ts: an smtp-server with the README policy, one SMTP conversation on loopback',
    async run() {
      const gateway = await startGateway(exampleDns());
      try {
        await smtpConversation(gateway.port, [
          'EHLO mail.example.net',
          'MAIL FROM:<x@bulk.example.net>',
          'RCPT TO:<b@example.com>',
          'RSET',
          'MAIL FROM:<a@example.net>',
          'RCPT TO:<x@elsewhere.org>',
          'RCPT TO:<b@example.com>',
          'DATA',
          'Subject: hello\r\n\r\nHello.\r\n.',
          'QUIT',
        ]);
      } finally {
        await gateway.close();
      }
    },
  },
  postfix: {
    about: 'examples/postfix.ts: the README policy as a Postfix policy server, asked as Postfix asks',
    async run() {
      const server = await startPolicy(exampleDns());
      try {
        const base = {
          client_address: '192.0.2.7',
          client_name: 'mail.example.net',
          helo_name: 'mail.example.net',
          sender: 'a@example.net',
          recipient: 'b@example.com',
        };
        const asks: Record<string, Record<string, string>> = {
          'clean mail': { ...base, instance: '1' },
          'a listed client': { ...base, instance: '2', client_address: '203.0.113.9' },
          'a bulk sender': { ...base, instance: '3', sender: 'x@bulk.example.net' },
          relaying: { ...base, instance: '4', recipient: 'x@elsewhere.org' },
        };
        const port = 'port' in server.address ? server.address.port : 0;
        const answers = await converse(
          port,
          Object.values(asks).map(policyRequest),
          /^(action=[^\n]*)\n\n/m,
          true,
        );
        for (const [i, what] of Object.keys(asks).entries()) {
          process.stdout.write(`${what}: ${answers[i]}\n`);
        }
      } finally {
        await server.close();
      }
    },
  },
  haraka: {
    about:
      'examples/haraka/: the plugin in a Haraka laid out as an operator does, one SMTP conversation on loopback',
    async run() {
      const here = fileURLToPath(new URL('.', import.meta.url));
      const root = join(here, '..');
      const haraka = join(root, 'node_modules', 'Haraka', 'bin', 'haraka');
      const dir = mkdtempSync(join(tmpdir(), 'mxguard-example-haraka-'));
      try {
        // `haraka -i DIR`, the plugin where `npm install haraka-plugin-mxguard` puts it (linked from
        // packages/haraka here), the example's config files, and a free loopback port.
        const install = spawnSync(process.execPath, [haraka, '-i', dir], { encoding: 'utf8' });
        if (install.status !== 0) throw new Error(`haraka -i failed: ${install.stdout}${install.stderr}`);
        mkdirSync(join(dir, 'node_modules'), { recursive: true });
        symlinkSync(
          join(root, 'packages', 'haraka'),
          join(dir, 'node_modules', 'haraka-plugin-mxguard'),
          'dir',
        );
        cpSync(join(here, 'haraka', 'config'), join(dir, 'config'), { recursive: true });
        const port = await freePort();
        writeFileSync(join(dir, 'config', 'smtp.ini'), `listen=127.0.0.1:${port}\n`);
        const child = spawn(process.execPath, [haraka, '-c', dir], {
          cwd: dir,
          // queue/discard accepts (250) and drops the message: nothing is delivered.
          env: { ...process.env, YES_REALLY_DO_DISCARD: '1', NODE_NO_WARNINGS: '1' },
          stdio: ['ignore', 'pipe', 'pipe'],
        });
        let log = '';
        await new Promise<void>((resolve, reject) => {
          const timer = setTimeout(() => reject(new Error(`Haraka did not start:\n${log}`)), 30_000);
          const onData = (b: Buffer) => {
            log += b.toString();
            if (log.includes(`Listening on 127.0.0.1:${port}`) && log.includes('[mxguard] checks:')) {
              clearTimeout(timer);
              resolve();
            }
          };
          child.stdout.on('data', onData);
          child.stderr.on('data', onData);
          child.once('exit', (code) => {
            clearTimeout(timer);
            reject(new Error(`Haraka exited ${code}:\n${log}`));
          });
        });
        try {
          process.stdout.write(`Haraka with mxguard listening on 127.0.0.1:${port}\n`);
          await smtpConversation(port, [
            'EHLO mail.example.net',
            'MAIL FROM:<a@example.net>',
            'RCPT TO:<x@elsewhere.org>',
            'RCPT TO:<b@example.com>',
            'DATA',
            'Subject: hello\r\n\r\nHello.\r\n.',
            'QUIT',
          ]);
          await smtpConversation(port, [
            'EHLO localhost',
            'MAIL FROM:<a@example.net>',
            'RCPT TO:<b@example.com>',
            'QUIT',
          ]);
        } finally {
          const exited = new Promise((r) => child.once('exit', r));
          child.kill('SIGTERM');
          await exited;
        }
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    },
  },
  test: {
    about: 'examples/policy.test.ts: a vitest unit test of the README policy (fake resolver, manual clock)',
    async run() {
      const vitest = join(
        dirname(createRequire(import.meta.url).resolve('vitest/package.json')),
        'vitest.mjs',
      );
      const here = fileURLToPath(new URL('.', import.meta.url));
      const r = spawnSync(
        process.execPath,
        [vitest, 'run', '--root', here, '--config', join(here, 'vitest.config.ts')],
        { stdio: 'inherit' },
      );
      process.exitCode = r.status ?? 1;
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
