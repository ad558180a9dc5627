import { ManualClock, reply } from '@mxguard/core';
import {
  formatReply,
  groupDirSync,
  PipeliningTap,
  parseSpoolFile,
  replyError,
  spoolId,
  startsWithEnhanced,
  stripMapped,
} from '@mxguard/smtp';
import { describe, expect, it } from 'vitest';

const b = (s: string) => Buffer.from(s, 'latin1');

describe('PipeliningTap', () => {
  it('sees nothing in one command a read', () => {
    const t = new PipeliningTap();
    for (const c of ['EHLO a.example\r\n', 'MAIL FROM:<>\r\n', 'RCPT TO:<u@example.com>\r\n']) {
      expect(t.feed(b(c))).toBe(false);
    }
  });

  it('sees a second command in the same read, even a partial one', () => {
    const t = new PipeliningTap();
    expect(t.feed(b('EHLO a.example\r\nMAIL FR'))).toBe(true);
    expect(t.firstAfter).toBe('EHLO');
  });

  it('joins a command split across reads', () => {
    const t = new PipeliningTap();
    expect(t.feed(b('MAIL FR'))).toBe(false);
    expect(t.feed(b('OM:<>\r\n'))).toBe(false);
    expect(t.feed(b('RCPT TO:<u@example.com>\r\n'))).toBe(false);
  });

  it('does not count message lines, and sees a command sent before the reply to the final dot', () => {
    const t = new PipeliningTap();
    expect(t.feed(b('DATA\r\n'))).toBe(false);
    t.replied(354);
    expect(t.feed(b('Subject: x\r\n\r\nline\r\n.line\r\n'))).toBe(false);
    expect(t.feed(b('more\r\n.'))).toBe(false);
    expect(t.feed(b('\r\n'))).toBe(false);
    expect(t.feed(b('QUIT\r\n'))).toBe(false);
    expect(t.feed(b('DATA\r\n'))).toBe(false);
    t.replied(354);
    expect(t.feed(b('x\r\n.\r\nQUIT\r\n'))).toBe(true);
    expect(t.firstAfter).toBe('DATA');
  });

  it('takes an empty message (the dot right after 354)', () => {
    const t = new PipeliningTap();
    t.feed(b('DATA\r\n'));
    t.replied(354);
    expect(t.feed(b('.\r\n'))).toBe(false);
    expect(t.feed(b('MAIL FROM:<>\r\n'))).toBe(false);
    expect(t.feed(b('RCPT TO:<a@b.example>\r\n'))).toBe(false);
  });

  it('goes back to commands when DATA is refused', () => {
    const t = new PipeliningTap();
    t.feed(b('DATA\r\n'));
    t.replied(503);
    expect(t.feed(b('MAIL FROM:<>\r\nRCPT TO:<a@b.example>\r\n'))).toBe(true);
  });
});

describe('PipeliningTap with PIPELINING offered (reject_unauth_pipelining)', () => {
  it('lets an EHLO client pipeline MAIL, RCPT and DATA as RFC 2920 allows', () => {
    const t = new PipeliningTap({ offered: true });
    expect(t.feed(b('EHLO a.example\r\n'))).toBe(false);
    expect(t.feed(b('MAIL FROM:<>\r\nRCPT TO:<a@b.example>\r\nRCPT TO:<c@b.example>\r\nDATA\r\n'))).toBe(
      false,
    );
    t.replied(354);
    expect(t.feed(b('Subject: x\r\n\r\nbody\r\n.\r\n'))).toBe(false);
  });

  it('catches commands sent ahead after HELO (no PIPELINING for a HELO client)', () => {
    const t = new PipeliningTap({ offered: true });
    expect(t.feed(b('HELO a.example\r\nMAIL FROM:<>\r\nRCPT TO:<a@b.example>\r\nDATA\r\n'))).toBe(true);
    expect(t.firstAfter).toBe('HELO');
    const u = new PipeliningTap({ offered: true });
    expect(u.feed(b('HELO a.example\r\n'))).toBe(false);
    expect(u.feed(b('MAIL FROM:<>\r\nRCPT TO:<a@b.example>\r\n'))).toBe(true);
  });

  it('catches commands sent before the reply to EHLO', () => {
    const t = new PipeliningTap({ offered: true });
    expect(t.feed(b('EHLO a.example\r\nMAIL FROM:<>\r\n'))).toBe(true);
    expect(t.firstAfter).toBe('EHLO');
  });

  it('catches message content sent before the 354, in the same read or the next', () => {
    const t = new PipeliningTap({ offered: true });
    t.feed(b('EHLO a.example\r\n'));
    expect(t.feed(b('MAIL FROM:<>\r\nRCPT TO:<a@b.example>\r\nDATA\r\nSubject: x\r\n'))).toBe(true);
    expect(t.firstAfter).toBe('DATA');
    const u = new PipeliningTap({ offered: true });
    u.feed(b('EHLO a.example\r\n'));
    expect(u.feed(b('MAIL FROM:<>\r\nRCPT TO:<a@b.example>\r\nDATA\r\n'))).toBe(false);
    expect(u.feed(b('Subject: x\r\n\r\nbody\r\n.\r\n'))).toBe(true);
    expect(u.violations).toBe(1);
  });
});

describe('replies', () => {
  it('carry our enhanced code in the message for smtp-server', () => {
    const e = replyError({ code: 550, enhanced: '5.7.1', text: 'No\r\nway' });
    expect(e.responseCode).toBe(550);
    expect(e.message).toBe('5.7.1 No way');
    expect(formatReply(reply(450, '4.7.1', 'Later'))).toBe('450 4.7.1 Later');
  });

  it('are recognised only when the classes agree', () => {
    expect(startsWithEnhanced(550, '5.7.1 x')).toBe(true);
    expect(startsWithEnhanced(450, '5.7.1 x')).toBe(false);
    expect(startsWithEnhanced(250, 'Accepted')).toBe(false);
    expect(startsWithEnhanced(550, ['5.7.1 x'])).toBe(false);
  });

  it('strip the IPv4-mapped prefix only', () => {
    expect(stripMapped('::ffff:192.0.2.1')).toBe('192.0.2.1');
    expect(stripMapped('::FFFF:192.0.2.1')).toBe('192.0.2.1');
    expect(stripMapped('2001:db8::1')).toBe('2001:db8::1');
    expect(stripMapped(undefined)).toBe('');
  });
});

describe('spool files', () => {
  it('have sortable unique names from the clock and the randomness given', () => {
    const clock = new ManualClock(1_700_000_000_123);
    expect(spoolId(clock, (n) => new Uint8Array(n).fill(0xab))).toBe('1700000000123-abababababababab');
  });

  it('split into envelope and exact message bytes', () => {
    const msg = Buffer.from([0x53, 0x0d, 0x0a, 0xff, 0x0a, 0x00]);
    const file = Buffer.concat([Buffer.from('{"version":1,"id":"x"}\n'), msg]);
    const { envelope, message } = parseSpoolFile(file);
    expect(envelope.id).toBe('x');
    expect(message.equals(msg)).toBe(true);
    expect(() => parseSpoolFile(Buffer.from('no newline'))).toThrow(TypeError);
    expect(() => parseSpoolFile(Buffer.from('{"version":2}\n'))).toThrow(/version/);
  });
});

describe('groupDirSync', () => {
  /** A folder fsync that finishes only when the test says so, counting the calls. */
  function manualSync() {
    const finishers: (() => void)[] = [];
    const sync = (_dir: string) => new Promise<void>((resolve) => finishers.push(resolve));
    return { sync, finishers };
  }

  it('shares one fsync among the callers that arrive together, and never lets a caller ride an fsync that started before it', async () => {
    const { sync, finishers } = manualSync();
    const group = groupDirSync('/spool', sync);
    const done: number[] = [];
    const first = group().then(() => done.push(0));
    expect(finishers).toHaveLength(1);
    // Arriving while the first fsync runs: their renames may be later than its start.
    const later = [1, 2, 3, 4, 5].map((i) => group().then(() => done.push(i)));
    expect(finishers).toHaveLength(1);
    finishers[0]?.();
    await first;
    await Promise.resolve();
    await Promise.resolve();
    expect(done).toEqual([0]);
    // The second fsync started after all five calls: one fsync for the five.
    expect(finishers).toHaveLength(2);
    finishers[1]?.();
    await Promise.all(later);
    expect(done.sort()).toEqual([0, 1, 2, 3, 4, 5]);
    expect(finishers).toHaveLength(2);
    // Idle again: the next caller starts its own fsync at once.
    const again = group();
    expect(finishers).toHaveLength(3);
    finishers[2]?.();
    await again;
  });

  it('a failed fsync fails its callers, and the callers waiting for the next one still get it', async () => {
    let calls = 0;
    const rejecting: ((e: Error) => void)[] = [];
    const ok: (() => void)[] = [];
    const sync = () =>
      new Promise<void>((resolve, reject) => {
        calls++;
        if (calls === 1) rejecting.push(reject);
        else ok.push(resolve);
      });
    const group = groupDirSync('/spool', sync);
    const first = group();
    const second = group();
    rejecting[0]?.(new Error('EIO'));
    await expect(first).rejects.toThrow('EIO');
    await new Promise((r) => setImmediate(r));
    expect(ok).toHaveLength(1);
    ok[0]?.();
    await expect(second).resolves.toBeUndefined();
  });
});
