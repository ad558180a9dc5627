/**
 * Detection of command pipelining where it is not allowed (RFC 2920), as Postfix's
 * `reject_unauth_pipelining`: commands sent ahead by a client that was not offered PIPELINING (it
 * said HELO, or we do not offer it), commands sent ahead of the reply to EHLO, HELO or STARTTLS
 * even when PIPELINING is offered (the client could not know yet), and message content sent before
 * our 354 (RFC 2920 section 3.1: DATA ends a group and the client waits for its reply).
 *
 * Without PIPELINING a client must wait for the reply to each command before it sends the next
 * (RFC 5321 section 4.3.1 / RFC 2920 section 3). Bytes of a second command that arrive in the same
 * read as a complete first command cannot have been written after our reply to it: we had not read
 * the first command yet, so we had not answered it. That is proof, not a guess (DESIGN principle 1).
 *
 * Limits (documented in docs/adapters/smtp-server.md): only one read at a time is looked at, so a
 * client whose early commands arrive in separate TCP reads before our reply goes unnoticed (Postfix
 * looks at its input buffer when it replies and sees somewhat more); detection stops after STARTTLS
 * (the plaintext socket's listeners are gone, and the TLS socket carries no early data by design).
 */
/** Commands after which a client must wait for our reply even with PIPELINING (RFC 2920 section 3.1). */
const GROUP_ENDS = new Set([
  'EHLO',
  'HELO',
  'DATA',
  'STARTTLS',
  'QUIT',
  'NOOP',
  'VRFY',
  'EXPN',
  'TURN',
  'AUTH',
  'BDAT',
]);

/**
 * Watches one connection's reads (before smtp-server parses them) and counts the pipelining
 * violations described above; `violations` and `firstAfter` say what it saw.
 */
export class PipeliningTap {
  private mode: 'command' | 'data' = 'command';
  /** Partial command line carried over from the previous read. */
  private rest = '';
  /** Last bytes of the previous read in data mode, to find an end-of-data marker split across reads. */
  private tail = '';
  /** Set after a DATA line until we know whether the server answered 354. */
  private awaiting354 = false;
  /** Content before our 354 was already counted for this DATA. */
  private contentEarly = false;
  /** How many violations were seen. */
  violations = 0;
  /** The command after which a violation was first seen, for the log. */
  firstAfter: string | undefined;
  /** PIPELINING is in our EHLO reply. */
  private readonly offered: boolean;
  /** The client said EHLO and PIPELINING was offered: it may send commands ahead (but not content). */
  private allowed = false;

  constructor(options: { offered?: boolean } = {}) {
    this.offered = options.offered ?? false;
  }

  /** Feeds one read; returns true when it proved a violation. */
  feed(chunk: Buffer): boolean {
    const before = this.violations;
    this.consume(chunk.toString('latin1'));
    return this.violations > before;
  }

  /** Tells the tap which reply the server sent, so a refused DATA returns it to command mode. */
  replied(code: number): void {
    if (!this.awaiting354) return;
    this.awaiting354 = false;
    if (code !== 354) {
      this.mode = 'command';
      this.rest = '';
    }
  }

  private consume(input: string): void {
    let s = input;
    while (s.length > 0) {
      if (this.mode === 'data') {
        // Content before our 354 (in a later read than the DATA line: the same read is caught
        // below, as bytes after the DATA line).
        if (this.awaiting354 && !this.contentEarly && s.length > 0) {
          this.contentEarly = true;
          this.violation('DATA');
        }
        const hay = this.tail + s;
        const end = hay.indexOf('\r\n.\r\n');
        if (end < 0) {
          this.tail = hay.slice(-4);
          return;
        }
        // Bytes after the end of the message: the client did not wait for our reply to it.
        const after = hay.slice(end + 5);
        this.mode = 'command';
        this.tail = '';
        this.rest = '';
        if (after.length > 0) this.violation('DATA');
        s = after;
        continue;
      }
      const text = this.rest + s;
      s = '';
      let pos = 0;
      for (;;) {
        const nl = text.indexOf('\n', pos);
        if (nl < 0) {
          // Bound what a client can make us hold: a command line longer than smtp-server's own
          // limit is refused by it anyway.
          this.rest = text.length - pos > 16 * 1024 ? '' : text.slice(pos);
          return;
        }
        const line = text.slice(pos, nl).replace(/\r$/, '');
        pos = nl + 1;
        const verb = line.trim().split(/\s+/, 1)[0]?.toUpperCase() ?? '';
        if (pos < text.length && (!this.allowed || GROUP_ENDS.has(verb))) {
          this.violation(verb);
          if (verb === 'DATA') this.contentEarly = true;
        }
        if (verb === 'EHLO') this.allowed = this.offered;
        else if (verb === 'HELO') this.allowed = false;
        if (verb === 'DATA' && line.trim().length === 4) {
          this.mode = 'data';
          this.awaiting354 = true;
          this.contentEarly = pos < text.length;
          // The marker may be the first line of the body: an empty message is ".\r\n" at once.
          this.tail = '\r\n';
          this.rest = '';
          s = text.slice(pos);
          break;
        }
      }
    }
  }

  private violation(after: string): void {
    this.violations++;
    this.firstAfter ??= after;
  }
}
