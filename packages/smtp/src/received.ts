import type { Session } from '@mxguard/core';

/** What the Received header says about our side of the hop. */
export interface ReceivedStamp {
  /** Our host name (the `by` clause). */
  readonly hostname: string;
  /** Our id for the message (queue or spool id), in the `id` clause. */
  readonly id?: string;
  /** When the message was accepted, ms since the epoch. */
  readonly time: number;
  /** The TLS protocol and cipher, when the client used STARTTLS (RFC 3848 `ESMTPS`). */
  readonly tls?: {
    /** The TLS version, such as `TLSv1.3`. */
    readonly protocol?: string;
    /** The cipher suite, such as `TLS_AES_256_GCM_SHA384`. */
    readonly cipher?: string;
  };
  /** The client sent EHLO (ESMTP) rather than HELO (SMTP). @default true */
  readonly esmtp?: boolean;
}

/** RFC 5322 date-time in UTC: `Tue, 01 Dec 2026 15:19:18 +0000`. */
export function rfc5322Date(ms: number): string {
  const d = new Date(ms);
  const day = ['Sun', 'Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat'][d.getUTCDay()];
  const mon = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'][
    d.getUTCMonth()
  ];
  const p = (n: number) => String(n).padStart(2, '0');
  return `${day}, ${p(d.getUTCDate())} ${mon} ${d.getUTCFullYear()} ${p(d.getUTCHours())}:${p(
    d.getUTCMinutes(),
  )}:${p(d.getUTCSeconds())} +0000`;
}

/** A header comment or word cleaned of what could end the header or the comment. */
function clean(s: string, max = 255): string {
  return s
    .replace(/[^\x21-\x7e]/g, '?')
    .replace(/[()\\]/g, '?')
    .slice(0, max);
}

/**
 * The `Received:` trace header we prepend to a message we accept (RFC 5321 section 4.4), in
 * Postfix's shape, so the tools that read Postfix's headers read ours:
 *
 * ```
 * Received: from HELO (VERIFIED-NAME [ADDRESS])
 *         by HOSTNAME (mxguard) with ESMTPS id ID
 *         (using TLSv1.3 with cipher TLS_AES_256_GCM_SHA384)
 *         for <RCPT>; DATE
 * ```
 *
 * The client's verified (forward-confirmed) PTR name, or `unknown` as Postfix writes; the protocol
 * keyword after RFC 3848 (`ESMTP`, `ESMTPS` with TLS, `SMTP` after HELO); `for` only with a single
 * recipient (several would disclose Bcc recipients to each other). Ends with CRLF.
 */
export function receivedHeader(session: Session, stamp: ReceivedStamp): string {
  const helo = session.helo ? clean(session.helo) : 'unknown';
  const name = session.rdns?.verified ? clean(session.rdns.verified) : 'unknown';
  const addr = clean(session.clientAddress);
  const ipv6 = addr.includes(':') ? `IPv6:${addr}` : addr;
  const esmtp = stamp.esmtp ?? true;
  const proto = `${esmtp ? 'E' : ''}SMTP${stamp.tls ? 'S' : ''}`;
  const lines = [`Received: from ${helo} (${name} [${ipv6}])`];
  lines.push(
    `\tby ${clean(stamp.hostname)} (mxguard) with ${proto}${stamp.id ? ` id ${clean(stamp.id)}` : ''}`,
  );
  if (stamp.tls) {
    const using = [stamp.tls.protocol ? clean(stamp.tls.protocol) : undefined, stamp.tls.cipher]
      .filter(Boolean)
      .map((v, i) => (i === 0 ? v : `with cipher ${clean(v as string)}`))
      .join(' ');
    if (using) lines.push(`\t(using ${using})`);
  }
  const rcpts = session.recipients ?? [];
  const last = `; ${rfc5322Date(stamp.time)}`;
  if (rcpts.length === 1) lines.push(`\tfor <${clean(rcpts[0] as string, 256)}>${last}`);
  else (lines as string[])[lines.length - 1] += last;
  return `${lines.join('\r\n')}\r\n`;
}
