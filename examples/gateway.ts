/**
 * An smtp-server of your own with the README policy inside: `attach()` puts the chain on
 * smtp-server's hooks, so each command is judged as it arrives and refused with the chain's reply.
 * `pnpm example gateway` starts it on a free loopback port, talks SMTP to it and prints the
 * replies. In production: port 25, your own `deliver`, and `new DnsResolver()`.
 */
import type { Resolver } from '@mxguard/dns';
import { attach } from '@mxguard/smtp';
import { SMTPServer } from 'smtp-server';
import { myPolicy } from './policy.js';

export async function startGateway(resolver: Resolver): Promise<{ port: number; close(): Promise<void> }> {
  const server = new SMTPServer({
    name: 'mx.example.com',
    disableReverseLookup: true, // the chain's enrichment does PTR lookups through `resolver`
    authOptional: true,
    disabledCommands: ['AUTH', 'STARTTLS'],
  });
  attach(server, {
    chain: myPolicy(resolver),
    log: { debug() {}, info() {}, warn: console.warn, error: console.error },
    recipientDomains: ['example.com'],
    // Hand an accepted message on (to a queue, an LMTP server...) and return its queue id.
    deliver: async (stream) => {
      stream.resume();
      await new Promise((done) => stream.on('end', done));
      return 'Q1';
    },
  });
  await new Promise<void>((ready) => server.listen(0, '127.0.0.1', () => ready()));
  const { port } = server.server.address() as { port: number };
  return { port, close: () => new Promise<void>((done) => server.close(() => done())) };
}
