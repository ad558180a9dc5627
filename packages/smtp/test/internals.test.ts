/**
 * The smtp-server internals the adapter reads (packages/smtp/src/internals.ts), checked one by one
 * against the smtp-server the lockfile pins, on a real server and a raw client: an upgrade that
 * moves or renames one fails here, by name.
 */
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import type { Socket } from 'node:net';
import {
  beforeCommand,
  connectionOf,
  dataBytesReceived,
  isBusy,
  isClosing,
  parserOf,
  SMTP_SERVER_TESTED,
  type SmtpConnectionInternals,
  wrapSend,
} from '@mxguard/smtp';
import { SMTPServer } from 'smtp-server';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RawClient } from './helpers.js';

const require = createRequire(new URL('../package.json', import.meta.url));

describe('smtp-server internals (internals.ts)', () => {
  let server: SMTPServer;
  let port = 0;
  const seen: { connection?: SmtpConnectionInternals; socket?: Socket } = {};
  let releaseData: (() => void) | undefined;
  const busyDuringData: boolean[] = [];
  const bytesDuringData: (number | undefined)[] = [];
  const commands: string[] = [];
  const sent: number[] = [];

  beforeAll(async () => {
    server = new SMTPServer({
      authOptional: true,
      disabledCommands: ['AUTH', 'STARTTLS'],
      disableReverseLookup: true,
      logger: false,
      onData(stream, _session, callback) {
        stream.on('data', () => {
          const c = seen.connection as SmtpConnectionInternals;
          bytesDuringData.push(dataBytesReceived(c));
        });
        stream.on('end', () => {
          // The message is in and we have not answered yet: the server is busy for the client.
          busyDuringData.push(isBusy(seen.connection as SmtpConnectionInternals));
          releaseData = () => callback(null, 'queued');
          releaseData();
        });
      },
    });
    const connect = server.connect.bind(server);
    server.connect = (socket, options) => {
      connect(socket, options);
      const c = connectionOf(server, socket);
      if (!c) return;
      seen.connection = c;
      seen.socket = socket as Socket;
      beforeCommand(c, (command) => {
        commands.push(command.split(' ', 1)[0] ?? '');
        if (command.toUpperCase() === 'XSTOP') {
          c.send(421, 'stopped here');
          return true;
        }
        return false;
      });
      wrapSend(c, (send) => (code, data, context) => {
        sent.push(code);
        send(code, data, context);
      });
    };
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
    port = (server.server.address() as { port: number }).port;
  });
  afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())));

  it('is the smtp-server version the lockfile pins', () => {
    const installed = (require('smtp-server/package.json') as { version: string }).version;
    expect(installed).toBe(SMTP_SERVER_TESTED);
    const lock = readFileSync(new URL('../../../pnpm-lock.yaml', import.meta.url), 'utf8');
    expect(lock).toContain(`smtp-server@${SMTP_SERVER_TESTED}`);
  });

  it('finds the connection of a socket, with its parser, send and command hook', async () => {
    const c = await RawClient.open(port);
    expect(await c.line()).toMatch(/^220 /);
    const conn = seen.connection as SmtpConnectionInternals;
    expect(conn).toBeDefined();
    expect(conn._socket).toBe(seen.socket);
    expect(typeof conn.id).toBe('string');
    expect(conn.remoteAddress).toMatch(/127\.0\.0\.1$/);
    expect(typeof conn.name).toBe('string');
    const parser = parserOf(conn);
    expect(parser && typeof parser.write).toBe('function');
    expect(parser?._dataMode).toBe(false);
    expect(isClosing(conn)).toBe(false);
    expect(isBusy(conn)).toBe(false);
    expect(dataBytesReceived(conn)).toBeUndefined();
    expect(sent).toContain(220);
    expect(await c.cmd('EHLO client.example.net')).toMatch(/^250 /);
    expect(commands).toContain('EHLO');
    // beforeCommand answering for smtp-server: the command never reaches it.
    expect(await c.cmd('XSTOP')).toBe('421 stopped here');
    c.close();
  });

  it('tells message bytes during DATA and busy while the message is being stored', async () => {
    const c = await RawClient.open(port);
    await c.reply();
    await c.cmd('EHLO client.example.net');
    await c.cmd('MAIL FROM:<a@example.net>');
    await c.cmd('RCPT TO:<b@example.com>');
    expect(await c.cmd('DATA')).toMatch(/^354 /);
    c.write('Subject: x\r\n\r\nhello\r\n.\r\n');
    expect(await c.line()).toMatch(/^250 /);
    expect(bytesDuringData.some((b) => typeof b === 'number' && b > 0)).toBe(true);
    expect(busyDuringData).toEqual([true]);
    const conn = seen.connection as SmtpConnectionInternals;
    await c.cmd('QUIT');
    for (let i = 0; i < 50 && !isClosing(conn); i++) await new Promise((r) => setTimeout(r, 20));
    expect(isClosing(conn)).toBe(true);
  });
});
