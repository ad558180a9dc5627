import type { AddressInfo } from 'node:net';
import { SMTPServer } from 'smtp-server';

/** A real SMTP server on loopback that knows some mailboxes and refuses others. */
export interface TestSmtp {
  readonly port: number;
  /** Every RCPT TO address it was asked about, in order. */
  readonly rcpts: string[];
  /** MAIL FROM addresses it saw. */
  readonly senders: string[];
  /** Connections it accepted. */
  connections: number;
  /** Whether any client sent DATA. */
  dataSeen: boolean;
  /** While true, the server never answers RCPT TO (a hung MX). */
  hang: boolean;
  stop(): Promise<void>;
}

export interface TestSmtpOptions {
  /** Mailboxes that exist. */
  readonly users: readonly string[];
  /** Addresses refused with a policy 554 5.7.1 instead of 550 5.1.1. */
  readonly policy?: readonly string[];
}

export async function startSmtp(options: TestSmtpOptions): Promise<TestSmtp> {
  const users = new Set(options.users.map((u) => u.toLowerCase()));
  const policy = new Set((options.policy ?? []).map((u) => u.toLowerCase()));
  const pendingHangs: (() => void)[] = [];
  const state = {
    port: 0,
    rcpts: [] as string[],
    senders: [] as string[],
    connections: 0,
    dataSeen: false,
    hang: false,
    stop: async () => {},
  };
  const server = new SMTPServer({
    authOptional: true,
    disabledCommands: ['AUTH', 'STARTTLS'],
    logger: false,
    onConnect(_session, cb) {
      state.connections++;
      cb();
    },
    onMailFrom(address, _session, cb) {
      state.senders.push(address.address);
      cb();
    },
    onRcptTo(address, _session, cb) {
      state.rcpts.push(address.address);
      if (state.hang) {
        pendingHangs.push(() => cb(new Error('gone')));
        return;
      }
      const a = address.address.toLowerCase();
      if (users.has(a)) return cb();
      const err = new Error(
        policy.has(a) ? '5.7.1 Client host rejected: probing not welcome' : `5.1.1 <${a}>: User unknown`,
      ) as Error & { responseCode: number };
      err.responseCode = policy.has(a) ? 554 : 550;
      cb(err);
    },
    onData(stream, _session, cb) {
      state.dataSeen = true;
      stream.resume();
      stream.on('end', () => cb());
    },
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  state.port = (server.server.address() as AddressInfo).port;
  state.stop = () =>
    new Promise<void>((resolve) => {
      for (const h of pendingHangs.splice(0)) h();
      server.close(() => resolve());
    });
  return state;
}
