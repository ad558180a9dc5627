import type { Reply } from '@mxguard/core';

/** An error smtp-server turns into a reply: it reads `responseCode` and sends `message` as the text. */
export interface SmtpReplyError extends Error {
  /** The basic SMTP code (RFC 5321) smtp-server puts on the wire. */
  readonly responseCode: number;
  /** The enhanced status code (RFC 3463) the message begins with. */
  readonly enhanced: string;
}

/** An enhanced status code at the start of a reply text, as `5.7.1 ` (RFC 3463, class.subject.detail). */
const LEADING_ENHANCED = /^([245])\.(\d{1,3})\.(\d{1,3}) /;

/**
 * The error to hand to an smtp-server callback so that the client sees `code enhanced text`.
 *
 * smtp-server (3.x) never reads an enhanced code from an error: it maps the basic code alone
 * (550 -> 5.1.1 "mailbox unavailable", 450 -> 4.2.1, 554 -> 5.6.0) and prepends that, or nothing
 * when `hideENHANCEDSTATUSCODES` is set (its default). So the message carries our own code as its
 * first word, and the connection's `send` is wrapped (see `install`) to stop smtp-server from
 * prepending a second one when enhanced codes are advertised.
 */
export function replyError(r: Reply): SmtpReplyError {
  const err = new Error(`${r.enhanced} ${oneLine(r.text)}`) as Error & {
    responseCode: number;
    enhanced: string;
  };
  err.responseCode = r.code;
  err.enhanced = r.enhanced;
  return err;
}

/** True when `text` begins with an enhanced status code of the same class as `code` (a 5xx with 5.x.x). */
export function startsWithEnhanced(code: number, text: unknown): boolean {
  if (typeof text !== 'string') return false;
  const m = LEADING_ENHANCED.exec(text);
  return m !== null && Number(m[1]) === Math.floor(code / 100);
}

/** A reply text kept on one line: a CR or LF would split the reply (response splitting). */
export function oneLine(text: string): string {
  return text.replace(/[\r\n\0]+/g, ' ');
}

/** The reply line as it goes on the wire (without CRLF): `550 5.7.1 text`. */
export function formatReply(r: Reply): string {
  return `${r.code} ${r.enhanced} ${oneLine(r.text)}`;
}
