/**
 * Every reach into smtp-server's internals, in one place. smtp-server (3.x) has no public hook for
 * what the adapter needs below the command level: the connection of a socket, the command parser
 * (to hold an early talker's bytes until the greeting is out), `send` (to keep our enhanced status
 * codes), `_onCommand` (to count junk commands and end expired sessions between commands) and the
 * state flags that say whether the server is busy answering. Each is read through a function here,
 * typed by {@link SmtpConnectionInternals}, and packages/smtp/test/internals.test.ts checks each
 * against the smtp-server version the lockfile pins ({@link SMTP_SERVER_TESTED}), so an upgrade
 * that moves one fails there, by name, rather than somewhere in the adapter.
 */
import type { Socket } from 'node:net';
import type { Writable } from 'node:stream';
import type { SMTPServer } from 'smtp-server';

/** The smtp-server version these internals were read from and are tested against. */
export const SMTP_SERVER_TESTED = '3.21.6';

/** The parts of smtp-server's SMTPConnection the adapter uses. */
export interface SmtpConnectionInternals {
  /** smtp-server's id of the session (its logs name it). */
  readonly id: string;
  /** Our host name, as the greeting gives it. */
  readonly name: string;
  /** The client's IP address. */
  readonly remoteAddress: string;
  /** The client's TCP port. */
  readonly remotePort: number;
  /** The client's socket (a TLS socket after STARTTLS). */
  readonly _socket: Socket;
  /** The greeting is out: commands are handled. */
  readonly _ready: boolean;
  /** STARTTLS is under way. */
  readonly _upgrading: boolean;
  /** Set while a line goes to a continuation (AUTH) rather than to the command table. */
  readonly _nextHandler: unknown;
  /** A hook (onMailFrom, onRcptTo, ...) is running: the client awaits its answer. */
  readonly _handlerPending: boolean;
  /** The connection is being closed. */
  readonly _closing: boolean;
  /** The connection is closed. */
  readonly _closed: boolean;
  /** The message stream of the DATA in progress, if any. */
  readonly _dataStream:
    | {
        /** Message bytes received so far. */
        readonly byteLength?: number;
      }
    | null
    | undefined;
  /** The command parser the socket is piped into (`false` once torn down). */
  readonly _parser:
    | (Writable & {
        /** True while the parser passes message bytes (DATA) rather than command lines. */
        readonly _dataMode?: boolean;
      })
    | false
    | undefined;
  /** Handles one command line (smtp-server's dispatcher). */
  _onCommand(command: Buffer | undefined, callback?: () => void): void;
  /** Writes a reply: the code and its line or lines. */
  send(code: number, data?: string | string[], context?: unknown): void;
}

/** The connection smtp-server made for `socket` (undefined when it refused or closed it at once). */
export function connectionOf(server: SMTPServer, socket: unknown): SmtpConnectionInternals | undefined {
  for (const c of server.connections as unknown as Set<SmtpConnectionInternals>) {
    if (c._socket === socket) return c;
  }
  return undefined;
}

/** The connection's command parser (a writable stream the socket is piped into), if it has one. */
export function parserOf(connection: SmtpConnectionInternals):
  | (Writable & {
      /** True while the parser passes message bytes (DATA) rather than command lines. */
      _dataMode?: boolean;
    })
  | undefined {
  return connection._parser || undefined;
}

/** The connection is closing or closed. */
export function isClosing(connection: SmtpConnectionInternals): boolean {
  return connection._closing || connection._closed;
}

/**
 * The server owes the client an answer: a hook of ours is running, or the message is in and we are
 * still storing it.
 */
export function isBusy(connection: SmtpConnectionInternals): boolean {
  const parser = parserOf(connection);
  return connection._handlerPending || (!!connection._dataStream && !!parser && !parser._dataMode);
}

/** Message bytes received so far while the client sends DATA; undefined outside DATA. */
export function dataBytesReceived(connection: SmtpConnectionInternals): number | undefined {
  const parser = parserOf(connection);
  if (!parser?._dataMode || !connection._dataStream) return undefined;
  return connection._dataStream.byteLength ?? 0;
}

/**
 * Runs `before` ahead of each command smtp-server is about to handle as a command (not while it
 * waits for a handler, upgrades to TLS or hands the line to an AUTH continuation); `before`
 * returning true means it has answered and smtp-server must not.
 */
export function beforeCommand(
  connection: SmtpConnectionInternals,
  before: (command: string) => boolean,
): void {
  const onCommand = connection._onCommand.bind(connection);
  connection._onCommand = (command, callback) => {
    if (connection._ready && !connection._upgrading && !connection._nextHandler) {
      if (before((command ?? '').toString())) return;
    }
    onCommand(command, callback);
  };
}

/** Replaces the connection's `send` with `wrap(original)`. */
export function wrapSend(
  connection: SmtpConnectionInternals,
  wrap: (send: SmtpConnectionInternals['send']) => SmtpConnectionInternals['send'],
): void {
  connection.send = wrap(connection.send.bind(connection));
}
