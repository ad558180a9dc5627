import { chain, defer, reject, reply } from '@mxguard/core';
import { startPolicyServer } from '@mxguard/postfix';
import { describe, expect, it } from 'vitest';
import { memoryLogger, PolicyClient, rcptRequest } from './helpers.js';

const CONNECTIONS = 50;
const REQUESTS = 200;

describe('the policy server under load (bounded loopback client)', () => {
  it(`answers ${CONNECTIONS} connections x ${REQUESTS} requests with no lost or mismatched answer`, async () => {
    // The chain echoes the request's unique recipient into the reply, after a variable number of
    // event-loop turns, so answers of concurrent requests finish out of order inside the server.
    const echo = chain([
      {
        name: 'echo',
        stage: 'rcpt',
        async run(s) {
          const to = s.rcptTo ?? '';
          const turns = to.length % 4;
          for (let i = 0; i < turns; i++) await new Promise((r) => setImmediate(r));
          return to.startsWith('d')
            ? defer(reply(451, '4.7.1', `later ${to}`), 'echo')
            : reject(reply(550, '5.7.1', `no ${to}`), 'echo');
        },
      },
    ]);
    const log = memoryLogger();
    const server = await startPolicyServer({ listen: { host: '127.0.0.1', port: 0 }, chain: echo, log });
    try {
      const results = await Promise.all(
        Array.from({ length: CONNECTIONS }, async (_, c) => {
          const client = await PolicyClient.open(server);
          let ok = 0;
          for (let i = 0; i < REQUESTS; i++) {
            const to = `${i % 2 ? 'd' : 'r'}${c}x${i}@example.com`;
            const got = await client.ask(
              rcptRequest({ recipient: to, instance: `c${c}.t${Math.floor(i / 10)}` }),
            );
            const want = i % 2 ? `451 4.7.1 later ${to} (echo)` : `550 5.7.1 no ${to} (echo)`;
            if (got === want) ok++;
            else throw new Error(`connection ${c} request ${i}: got "${got}", want "${want}"`);
          }
          client.close();
          return ok;
        }),
      );
      expect(results.reduce((a, b) => a + b, 0)).toBe(CONNECTIONS * REQUESTS);
      expect(log.lines.filter((l) => l.level === 'error' || l.level === 'warn')).toEqual([]);
    } finally {
      await server.close();
    }
  });
});
