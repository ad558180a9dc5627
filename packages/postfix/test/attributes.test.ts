import {
  formatRequest,
  type PolicyRequest,
  READ_ATTRIBUTES,
  RequestParser,
  rdnsOf,
  sessionOf,
} from '@mxguard/postfix';
import { describe, expect, it } from 'vitest';
import { rcptRequest } from './helpers.js';

const req = (o: Record<string, string> = {}) => new Map(Object.entries(rcptRequest(o)));

describe('sessionOf', () => {
  it('maps a RCPT request', () => {
    const m = sessionOf(
      req({ sasl_username: 'alice', encryption_protocol: 'TLSv1.3', recipient_count: '2' }),
    );
    expect(m).toEqual({
      ok: true,
      session: {
        clientAddress: '192.0.2.10',
        clientPort: 40000,
        stage: 'rcpt',
        rdns: { names: ['mail.example.net'], verified: 'mail.example.net' },
        helo: 'mail.example.net',
        mailFrom: 'alice@example.net',
        rcptTo: 'bob@example.com',
        tls: true,
        authUser: 'alice',
        flags: { postfixInstance: 'a1b2.5f0c1d2e.1234.0', postfixRecipientCount: 2 },
      },
    });
  });

  it.each([
    ['CONNECT', 'connect'],
    ['EHLO', 'helo'],
    ['HELO', 'helo'],
    ['MAIL', 'mail'],
    ['RCPT', 'rcpt'],
    ['DATA', 'data'],
    ['END-OF-MESSAGE', 'data'],
  ])('maps protocol_state %s to %s', (state, stage) => {
    const m = sessionOf(req({ protocol_state: state }));
    expect(m.ok && m.session.stage).toBe(stage);
  });

  it('reads an empty sender as unknown before MAIL and as the null sender from MAIL on', () => {
    const at = (state: string) => {
      const m = sessionOf(req({ protocol_state: state, sender: '', recipient: '' }));
      return m.ok ? m.session : undefined;
    };
    expect(at('HELO')?.mailFrom).toBeUndefined();
    expect(at('MAIL')?.mailFrom).toBe('');
    expect(at('RCPT')?.mailFrom).toBe('');
    expect(at('RCPT')?.rcptTo).toBeUndefined();
    expect(at('MAIL')?.tls).toBe(false);
  });

  it('does not judge other requests, states or a request without client_address', () => {
    expect(sessionOf(req({ request: 'junk' })).ok).toBe(false);
    expect(sessionOf(req({ protocol_state: 'VRFY' })).ok).toBe(false);
    expect(sessionOf(req({ client_address: '' })).ok).toBe(false);
  });
});

describe('rdnsOf: what "unknown" means', () => {
  const r = (
    client: string | undefined,
    reverse: string | undefined,
    mode: 'temporary' | 'absent' = 'temporary',
  ) => {
    const m = new Map<string, string>();
    if (client !== undefined) m.set('client_name', client);
    if (reverse !== undefined) m.set('reverse_client_name', reverse);
    return rdnsOf(m, mode);
  };
  it('maps verified and unverified names', () => {
    expect(r('Mail.Example.NET.', 'mail.example.net')).toEqual({
      names: ['mail.example.net'],
      verified: 'mail.example.net',
    });
    expect(r('unknown', 'dyn-1-2.isp.example')).toEqual({ names: ['dyn-1-2.isp.example'], verified: null });
  });
  it('reads "unknown" PTR as a temporary unknown by default, or as absent when told', () => {
    expect(r('unknown', 'unknown')).toEqual({ names: [], verified: null, error: 'temporary' });
    expect(r('unknown', 'unknown', 'absent')).toEqual({ names: [], verified: null });
  });
  it('leaves rdns undefined when Postfix sent no names, and uses client_name alone from old Postfix', () => {
    expect(r(undefined, undefined)).toBeUndefined();
    expect(r('mx.example.org', undefined)).toEqual({ names: ['mx.example.org'], verified: 'mx.example.org' });
  });
});

describe('READ_ATTRIBUTES', () => {
  // The policy server's parser keeps only these: an attribute sessionOf reads and this set lacks
  // would be lost to it without a word.
  class Recording extends Map<string, string> {
    readonly asked = new Set<string>();
    override get(k: string) {
      this.asked.add(k);
      return super.get(k);
    }
    override has(k: string) {
      this.asked.add(k);
      return super.has(k);
    }
  }
  const variants: Record<string, string>[] = [
    {},
    { sasl_username: 'alice', encryption_protocol: 'TLSv1.3', recipient_count: '2', queue_id: 'ABC' },
    { protocol_state: 'CONNECT', client_name: 'unknown', reverse_client_name: 'unknown' },
    { protocol_state: 'END-OF-MESSAGE', sender: '' },
    { client_name: 'mail.example.net.', reverse_client_name: 'other.example.net' },
  ];

  it('holds every attribute sessionOf reads', () => {
    for (const v of variants) {
      const r = new Recording(Object.entries(rcptRequest(v)));
      sessionOf(r);
      sessionOf(r, { unknownName: 'absent' });
      for (const k of r.asked) expect(READ_ATTRIBUTES.has(k), k).toBe(true);
    }
  });

  it('a request parsed keeping only them maps to the same session', () => {
    for (const v of variants) {
      const bytes = Buffer.from(formatRequest(rcptRequest(v)));
      const all = new RequestParser();
      const kept = new RequestParser({ keep: READ_ATTRIBUTES });
      all.feed(bytes);
      kept.feed(bytes);
      const a = all.take();
      const k = kept.take();
      expect(a && k).toBeTruthy();
      expect(k?.size).toBeLessThan(a?.size ?? 0);
      expect(sessionOf(k as PolicyRequest)).toEqual(sessionOf(a as PolicyRequest));
    }
  });
});
