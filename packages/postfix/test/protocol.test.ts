import { reply } from '@mxguard/core';
import {
  deferIfPermitAction,
  formatAnswer,
  formatRequest,
  ProtocolError,
  RequestParser,
  replyAction,
} from '@mxguard/postfix';
import { describe, expect, it } from 'vitest';

function parseAll(chunks: (string | Buffer)[], limits = {}): Map<string, string>[] {
  const p = new RequestParser(limits);
  const out: Map<string, string>[] = [];
  for (const c of chunks) {
    p.feed(typeof c === 'string' ? Buffer.from(c) : c);
    for (let r = p.take(); r; r = p.take()) out.push(new Map(r));
  }
  return out;
}

describe('RequestParser (SMTPD_POLICY_README: name=value lines, an empty line ends a request)', () => {
  it('parses a request split at any byte', () => {
    const raw = 'request=smtpd_access_policy\nprotocol_state=RCPT\nsender=\nrecipient=a=b@example.com\n\n';
    for (let i = 0; i <= raw.length; i++) {
      const reqs = parseAll([raw.slice(0, i), raw.slice(i)]);
      expect(reqs).toHaveLength(1);
      expect(reqs[0]?.get('sender')).toBe('');
      // Only the first "=" separates: values may contain "=".
      expect(reqs[0]?.get('recipient')).toBe('a=b@example.com');
    }
  });

  it('parses several requests in one chunk, tolerates CRLF and stray empty lines', () => {
    const reqs = parseAll(['\n\na=1\r\nb=2\r\n\r\n\nc=3\n\n']);
    expect(reqs.map((r) => Object.fromEntries(r))).toEqual([{ a: '1', b: '2' }, { c: '3' }]);
  });

  it('keeps the last value of a repeated attribute', () => {
    expect(parseAll(['a=1\na=2\n\n'])[0]?.get('a')).toBe('2');
  });

  it('keeps UTF-8 values (SMTPUTF8 addresses)', () => {
    expect(parseAll(['recipient=jösé@exämple.com\n\n'])[0]?.get('recipient')).toBe('jösé@exämple.com');
  });

  it.each([
    ['a line without "="', 'garbage\n', 'no-equals'],
    ['an empty name', '=x\n', 'bad-name'],
    ['a binary name', '\u0000\u0001=x\n', 'bad-name'],
    ['a line over the limit', `a=${'x'.repeat(100)}\n`, 'line-too-long'],
    ['an unfinished line over the limit', `a=${'x'.repeat(100)}`, 'line-too-long'],
    ['too many attributes', 'a=1\nb=2\nc=3\nd=4\n', 'too-many-attributes'],
  ])('refuses %s', (_what, raw, code) => {
    const p = new RequestParser({ maxLineLength: 50, maxAttributes: 3 });
    let caught: unknown;
    try {
      p.feed(Buffer.from(raw));
    } catch (err) {
      caught = err;
    }
    expect(caught).toBeInstanceOf(ProtocolError);
    expect((caught as ProtocolError).code).toBe(code);
  });

  it('holds at most maxQueued requests not yet taken, however many a client sends ahead', () => {
    const p = new RequestParser({ maxQueued: 5 });
    let caught: unknown;
    let fed = 0;
    try {
      // 10,000 distinct minimal requests in chunks of 100, never taken.
      for (let i = 0; i < 100; i++) {
        p.feed(Buffer.from(Array.from({ length: 100 }, (_, j) => `k=${i * 100 + j}\n\n`).join('')));
        fed++;
      }
    } catch (err) {
      caught = err;
    }
    expect(fed).toBe(0);
    expect((caught as ProtocolError).code).toBe('too-many-requests');
    // Taken as they come, the same 10,000 pass: the bound is on what waits, not on the total.
    const q = new RequestParser({ maxQueued: 5 });
    let taken = 0;
    for (let i = 0; i < 10_000; i++) {
      q.feed(Buffer.from(`k=${i}\n\n`));
      for (let r = q.take(); r; r = q.take()) taken++;
    }
    expect(taken).toBe(10_000);
  });

  it('accepts a line of exactly the limit', () => {
    const line = `a=${'x'.repeat(48)}`;
    expect(parseAll([`${line}\n\n`], { maxLineLength: 50 })[0]?.get('a')).toHaveLength(48);
    // The limit counts the line without its CR.
    expect(parseAll([`${line}\r\n\r\n`], { maxLineLength: 50 })[0]?.get('a')).toHaveLength(48);
    expect(() => parseAll([`${line}x\r\n`], { maxLineLength: 50 })).toThrow(ProtocolError);
  });

  it('keeps a UTF-8 character split across chunks, and every line of a chunk of many', () => {
    const raw = Buffer.from('a=1\r\nrecipient=jösé@exämple.com\nb=\n\nc=€\n\n');
    for (let i = 0; i <= raw.length; i++) {
      const reqs = parseAll([raw.subarray(0, i), raw.subarray(i)]);
      expect(reqs.map((r) => Object.fromEntries(r))).toEqual([
        { a: '1', recipient: 'jösé@exämple.com', b: '' },
        { c: '€' },
      ]);
    }
  });

  it('round-trips formatRequest', () => {
    const attrs = { request: 'smtpd_access_policy', sender: '', recipient: 'bob@example.com' };
    expect(Object.fromEntries(parseAll([formatRequest(attrs)])[0] ?? [])).toEqual(attrs);
  });
});

describe('answers', () => {
  it('puts our code and enhanced code first, as access(5) "5NN text" asks', () => {
    expect(replyAction(reply(550, '5.7.1', 'go away (helo-fqdn)'))).toBe('550 5.7.1 go away (helo-fqdn)');
    expect(replyAction(reply(451, '4.7.1', 'later'))).toBe('451 4.7.1 later');
  });

  it('keeps our enhanced code in DEFER_IF_PERMIT', () => {
    expect(deferIfPermitAction(reply(450, '4.7.1', 'greylisted'))).toBe('DEFER_IF_PERMIT 4.7.1 greylisted');
  });

  it('never lets a control character onto the wire', () => {
    const r = { code: 550, enhanced: '5.7.1', text: 'a\u0000b\tc\u007f' };
    expect(formatAnswer(replyAction(r))).toBe('action=550 5.7.1 a b c\n\n');
    expect(formatAnswer('DUNNO\n\naction=OK')).toBe('action=DUNNO action=OK\n\n');
  });
});

describe('attribute names', () => {
  // The parser checks names character by character; it must accept exactly what the protocol's
  // word pattern accepts, and store them in lower case, on both of its paths (ASCII chunks decoded
  // whole, others line by line).
  const WORD = /^[A-Za-z0-9_.-]{1,64}$/;
  const alphabet = 'aZ09_.-@ =\u00e9/:Az';
  let seed = 7;
  const rnd = (k: number) => {
    seed = (seed * 1103515245 + 12345) % 2 ** 31;
    return seed % k;
  };
  const names = ['request', 'Client_Address', 'a', 'x'.repeat(64), 'x'.repeat(65), '', 'ü', 'a b'];
  for (let i = 0; i < 400; i++) {
    let n = '';
    const len = 1 + rnd(8);
    for (let j = 0; j < len; j++) n += alphabet[rnd(alphabet.length)];
    names.push(n);
  }
  it.each([
    ['ASCII', ''],
    ['UTF-8', 'é'],
  ])('accepts a name as the word pattern does, in lower case (%s chunk)', (_what, value) => {
    for (const name of names) {
      if (name.includes('=') || name === '') continue;
      const p = new RequestParser();
      let ok = true;
      try {
        p.feed(Buffer.from(`${name}=v${value}\n\n`));
      } catch (err) {
        expect((err as ProtocolError).code).toBe('bad-name');
        ok = false;
      }
      expect(ok, name).toBe(WORD.test(name));
      if (ok) expect(p.take()?.get(name.toLowerCase()), name).toBe(`v${value}`);
    }
  });
});
