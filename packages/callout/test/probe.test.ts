import { createServer } from 'node:net';
import { isProbeable, meansUnknownUser, type ProbeOptions, smtpProbe } from '@mxguard/callout';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startSmtp, type TestSmtp } from './helpers/smtp.js';

let smtp: TestSmtp;
beforeAll(async () => {
  smtp = await startSmtp({ users: ['alice@forged.example'], policy: ['blocked@forged.example'] });
});
afterAll(async () => {
  await smtp?.stop();
});

const opts = (port: number, signal = AbortSignal.timeout(10_000)): ProbeOptions => ({
  port,
  helo: 'mx.test.example',
  sender: '',
  signal,
});
const target = [{ host: 'mx.forged.example', address: '127.0.0.1' }];

describe('smtpProbe against a real SMTP server on loopback', () => {
  it('an existing mailbox: exists, and never sends DATA', async () => {
    const r = await smtpProbe()(target, 'alice@forged.example', opts(smtp.port));
    expect(r.status).toBe('exists');
    expect(r.text).toContain('mx.forged.example[127.0.0.1] said: 250');
    expect(smtp.senders.at(-1)).toBe('');
    expect(smtp.dataSeen).toBe(false);
  });

  it('an unknown mailbox (550 5.1.1): unknown-user', async () => {
    const r = await smtpProbe()(target, 'nobody@forged.example', opts(smtp.port));
    expect(r.status).toBe('unknown-user');
    expect(r.text).toContain('550 5.1.1');
    expect(r.text).toContain('in reply to RCPT TO command');
  });

  it('a policy refusal (554 5.7.1) proves nothing: inconclusive', async () => {
    const r = await smtpProbe()(target, 'blocked@forged.example', opts(smtp.port));
    expect(r.status).toBe('inconclusive');
  });

  it('uses the configured probe sender', async () => {
    const r = await smtpProbe()(target, 'alice@forged.example', {
      ...opts(smtp.port),
      sender: 'double-bounce@test.example',
    });
    expect(r.status).toBe('exists');
    expect(smtp.senders.at(-1)).toBe('double-bounce@test.example');
  });

  it('a dead first MX: falls over to the next target', async () => {
    // The server listens on 127.0.0.1 only, so the same port on ::1 refuses the connection.
    const two = [
      { host: 'dead.forged.example', address: '::1' },
      { host: 'mx.forged.example', address: '127.0.0.1' },
    ];
    const r = await smtpProbe()(two, 'alice@forged.example', opts(smtp.port));
    expect(r.status).toBe('exists');
    const dead = await smtpProbe()(two.slice(0, 1), 'alice@forged.example', opts(smtp.port));
    expect(dead.status).toBe('temporary');
    expect(dead.text).toContain('connect to dead.forged.example[::1]');
  });

  it('a hung MX: temporary once the probe time is up, never unknown-user', async () => {
    smtp.hang = true;
    try {
      const r = await smtpProbe()(target, 'alice@forged.example', opts(smtp.port, AbortSignal.timeout(300)));
      expect(r.status).toBe('temporary');
    } finally {
      smtp.hang = false;
    }
  });

  it('a server that talks garbage or floods: temporary, bounded', async () => {
    const bad = createServer((sock) => {
      sock.write('220 ok\r\n');
      sock.on('data', () => sock.write(`250-${'x'.repeat(5000)}\r\n`));
    });
    await new Promise<void>((r) => bad.listen(0, '127.0.0.1', () => r()));
    const a = bad.address();
    const port = typeof a === 'object' && a ? a.port : 0;
    try {
      const r = await smtpProbe()(target, 'alice@forged.example', opts(port));
      expect(r.status).toBe('temporary');
      expect(r.text).toContain('too long');
    } finally {
      await new Promise<void>((r) => bad.close(() => r()));
    }
  });

  it('a server that answers what was never asked: the unread replies are capped, then temporary', async () => {
    // We never pipeline, so at most one reply can wait unread. Without a cap, 5000 unsolicited
    // "250" lines after EHLO would queue up and answer MAIL FROM and RCPT TO ("exists").
    let connections = 0;
    const flood = createServer((sock) => {
      connections++;
      sock.write('220 ok\r\n');
      sock.once('data', () => sock.write('250 hello\r\n'.repeat(5000)));
      sock.on('error', () => {});
    });
    await new Promise<void>((r) => flood.listen(0, '127.0.0.1', () => r()));
    const a = flood.address();
    const port = typeof a === 'object' && a ? a.port : 0;
    try {
      const r = await smtpProbe()(target, 'alice@forged.example', opts(port));
      expect(r.status).toBe('temporary');
      expect(r.text).toContain('too many unsolicited replies');
      expect(connections).toBe(1);
    } finally {
      await new Promise<void>((r) => flood.close(() => r()));
    }
  });

  it('refuses to probe an address that could inject commands', async () => {
    const before = smtp.connections;
    const r = await smtpProbe()(target, 'a@b.example>\r\nDATA', opts(smtp.port));
    expect(r.status).toBe('inconclusive');
    expect(smtp.connections).toBe(before);
  });
});

describe('probe helpers', () => {
  it('meansUnknownUser follows RFC 3463 subject 1 (addressing)', () => {
    expect(meansUnknownUser(550, '5.1.1')).toBe(true);
    expect(meansUnknownUser(550, '5.7.1')).toBe(false);
    expect(meansUnknownUser(550, undefined)).toBe(true);
    expect(meansUnknownUser(554, undefined)).toBe(false);
    expect(meansUnknownUser(450, '4.1.1')).toBe(false);
  });
  it('isProbeable accepts plain addresses and refuses injection', () => {
    expect(isProbeable('john.doe+tag@aol.com')).toBe(true);
    for (const bad of [
      '',
      'no-at',
      '@aol.com',
      'a@',
      'a b@aol.com',
      'a@aol.com\r\nRSET',
      'a>@aol.com',
      'é@aol.com',
    ]) {
      expect(isProbeable(bad)).toBe(false);
    }
  });
});
