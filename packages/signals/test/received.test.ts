import { readFileSync } from 'node:fs';
import type { Finding } from '@mxguard/core';
import { chain, ManualClock, next, weigh } from '@mxguard/core';
import type { ReceivedFinding, ReceivedRelay } from '@mxguard/signals';
import { RECEIVED_LIMITS, receivedRelays, scoreReceived } from '@mxguard/signals';
import { describe, expect, expectTypeOf, it } from 'vitest';

const sample = (name: string) =>
  readFileSync(new URL(`./fixtures/received/${name}.txt`, import.meta.url), 'utf8');
/** The fields that matter, without the bulky text. */
const brief = (rs: ReceivedRelay[]) => rs.map(({ text: _t, ...r }) => r);

describe('receivedRelays on the formats real MTAs write', () => {
  it('Postfix: rDNS name and [ip], "unknown", IPv6 literal, TLS comments, local pickup; other headers ignored', () => {
    expect(brief(receivedRelays(sample('postfix')))).toEqual([
      {
        index: 0,
        from: 'mx.example.org',
        rdns: 'localhost',
        ip: '127.0.0.1',
        by: 'mx.example.org',
        with: 'ESMTP',
        id: '4Q8x1c0Z7Kz9sVB',
        for: 'alice@example.org',
        date: 'Tue, 13 Jun 2023 10:21:34 +0200 (CEST)',
      },
      {
        index: 1,
        from: 'mail-wr1-f54.google.com',
        rdns: 'mail-wr1-f54.google.com',
        ip: '209.85.221.54',
        by: 'mx.example.org',
        with: 'ESMTPS',
        id: '4Q8x1b2c3dz9sV1',
        for: 'alice@example.org',
        date: 'Tue, 13 Jun 2023 10:21:33 +0200 (CEST)',
      },
      {
        index: 2,
        from: 'ylmf-pc',
        ip: '185.234.216.59',
        by: 'mx.example.org',
        with: 'ESMTPA',
        id: '7E1F2C0A3B',
        for: 'bob@example.org',
        date: 'Mon, 6 Feb 2023 03:12:45 +0100 (CET)',
      },
      {
        index: 3,
        from: 'mout.gmx.net',
        rdns: 'mout.gmx.net',
        ip: '2001:748:100:40::2:8',
        by: 'mx.example.org',
        with: 'ESMTPS',
        id: '1A2B3C4D5E',
        for: 'x@example.org',
        date: 'Wed, 1 Mar 2023 12:00:00 +0000 (UTC)',
      },
      { index: 4, by: 'mx.example.org', id: '3E2D1C0B9A', date: 'Thu, 2 Mar 2023 09:00:00 +0100 (CET)' },
    ]);
  });

  it('Exim: [ip] with helo=, [ip]:port, IPv6 literal with port=', () => {
    const rs = receivedRelays(sample('exim'));
    expect(brief(rs)).toEqual([
      {
        index: 0,
        from: '[198.51.100.23]',
        helo: 'DESKTOP-ABC123',
        ip: '198.51.100.23',
        by: 'mail.example.net',
        with: 'ESMTPA',
        id: '1pXyZa-0004Qm-2B',
        for: 'dave@example.com',
        date: 'Fri, 03 Mar 2023 14:22:01 +0000',
      },
      {
        index: 1,
        from: 'mail-ed1-f41.google.com',
        ip: '209.85.208.41',
        by: 'smtp.example.net',
        with: 'ESMTPS',
        id: '1pZabc-00012X-Qw',
        for: 'eve@example.net',
        date: 'Sat, 04 Mar 2023 08:15:42 +0000',
      },
      {
        index: 2,
        from: 'host-203-0-113-5.example.net',
        helo: 'bogus.example',
        ip: '203.0.113.5',
        by: 'smtp.example.net',
        with: 'ESMTP',
        id: '1pZabd-00012Y-Rx',
        date: 'Sat, 04 Mar 2023 08:16:00 +0000',
      },
      {
        index: 3,
        from: '[2001:db8:1234::5]',
        helo: '[IPv6:2001:db8:1234::5]',
        ip: '2001:db8:1234::5',
        by: 'smtp.example.net',
        with: 'ESMTPSA',
        id: '1pZabe-00012Z-Sy',
        for: 'z@example.com',
        date: 'Sat, 04 Mar 2023 08:17:00 +0000',
      },
    ]);
  });

  it('Sendmail: name [ip], (may be forged) nested, IDENT:user@host', () => {
    expect(brief(receivedRelays(sample('sendmail')))).toEqual([
      {
        index: 0,
        from: 'relay.example.edu',
        rdns: 'relay.example.edu',
        ip: '192.0.2.10',
        by: 'mail.example.com',
        with: 'ESMTPS',
        id: '32T9aBcD012345',
        for: 'frank@example.com',
        date: 'Wed, 29 Mar 2023 11:36:11 +0200',
      },
      {
        index: 1,
        from: 'bogus.helo',
        rdns: 'c-203-0-113-77.hsd1.example.net',
        ip: '203.0.113.77',
        by: 'mail.example.com',
        with: 'ESMTP',
        id: '32T9aBcE012346',
        for: 'frank@example.com',
        date: 'Wed, 29 Mar 2023 11:37:00 +0200',
      },
      {
        index: 2,
        from: 'localhost',
        rdns: 'localhost',
        ip: '127.0.0.1',
        by: 'mail.example.com',
        id: '32T9aBcF012347',
        date: 'Wed, 29 Mar 2023 11:38:00 +0200',
      },
    ]);
  });

  it('Exchange / Office 365: bare (ip) in the comment, IPv6, "with Microsoft SMTP Server"', () => {
    expect(brief(receivedRelays(sample('exchange')))).toEqual([
      {
        index: 0,
        from: 'DM6PR11MB4123.namprd11.prod.outlook.com',
        ip: '2603:10b6:5:1d8::12',
        by: 'BN9PR11MB5289.namprd11.prod.outlook.com',
        with: 'HTTPS',
        date: 'Tue, 14 Mar 2023 09:41:33 +0000',
      },
      {
        index: 1,
        from: 'EXCH01.corp.example.com',
        ip: '10.20.30.40',
        by: 'EXCH02.corp.example.com',
        with: 'MICROSOFT',
        id: '15.1.2507.23',
        date: 'Tue, 14 Mar 2023 10:41:33 +0100',
      },
      {
        index: 2,
        from: 'EUR05-AM6-obe.outbound.protection.outlook.com',
        rdns: 'mail-am6eur05on2101.outbound.protection.outlook.com',
        ip: '40.107.22.101',
        by: 'mx.example.org',
        with: 'ESMTPS',
        id: '4PbZ2k1xYkz1xyz',
        for: 'h@example.org',
        date: 'Tue, 14 Mar 2023 09:41:35 +0000 (UTC)',
      },
    ]);
  });

  it("Gmail: by <bare IPv6>, trailing-dot rDNS, and the submitting customer's dynamic address", () => {
    expect(brief(receivedRelays(sample('gmail')))).toEqual([
      {
        index: 0,
        by: '2002:a05:6a10:8f0e:b0:4a1:2b3c:4d5e',
        with: 'SMTP',
        id: 'k14csp1234567pxp',
        date: 'Tue, 1 Aug 2023 02:03:05 -0700 (PDT)',
      },
      {
        index: 1,
        from: 'mail-sor-f41.google.com',
        rdns: 'mail-sor-f41.google.com',
        ip: '209.85.220.41',
        by: 'mx.google.com',
        with: 'SMTPS',
        id: 'a640c23a62f3a-9a1b2c3d4e5sor1234567666b.12.2023.08.01.02.03.04',
        for: 'grace@gmail.com',
        date: 'Tue, 01 Aug 2023 02:03:04 -0700 (PDT)',
      },
      {
        index: 2,
        from: '[192.168.1.23]',
        rdns: 'p5b0a1c2d.dip0.t-ipconnect.de',
        ip: '91.10.28.45',
        by: 'smtp.gmail.com',
        with: 'ESMTPSA',
        id: 'v12-20020a05600c214c00b003fe1c332810sm1234567wml.33.2023.08.01.02.03.02',
        for: 'grace@gmail.com',
        date: 'Tue, 01 Aug 2023 02:03:02 -0700 (PDT)',
      },
    ]);
  });

  it('qmail: "(qmail N invoked from network)" and (HELO x) (ip)', () => {
    expect(brief(receivedRelays(sample('qmail')))).toEqual([
      { index: 0, date: '5 Apr 2023 10:00:00 -0000' },
      {
        index: 1,
        from: 'unknown',
        helo: 'mail.example.net',
        ip: '198.51.100.77',
        by: 'mx.example.com',
        with: 'SMTP',
        date: '5 Apr 2023 10:00:00 -0000',
      },
    ]);
  });

  it('takes a list of values or of header lines, as adapters hold them', () => {
    const values = [
      'from a.example (a.example [192.0.2.1]) by b.example with ESMTP id X1; Mon, 1 Jan 2024 00:00:00 +0000',
      'Received: from c.example ([192.0.2.3]) by d.example; Mon, 1 Jan 2024 00:00:00 +0000',
    ];
    expect(receivedRelays(values).map((r) => [r.index, r.ip, r.by])).toEqual([
      [0, '192.0.2.1', 'b.example'],
      [1, '192.0.2.3', 'd.example'],
    ]);
    expect(receivedRelays(values)[0]?.text).toBe(values[0]);
  });
});

describe('receivedRelays on hostile input', () => {
  it('never throws, bounds every field, and never reports an invalid address', () => {
    const nasty: unknown[] = [
      '',
      '((((((((((((((((((((((((((((((((((((',
      ')))))) from by with id for ;;;;;',
      `from ${'a'.repeat(100_000)} ([1.2.3.4]) by ${'b.'.repeat(50_000)}`,
      `from x (${'['.repeat(10_000)}1.2.3.4${']'.repeat(10_000)}) by y`,
      'from x ([999.1.1.1]) by y; date',
      'from x ([1.2.3.4.5]) by y',
      'from x ([IPv6:::::::::]) by y',
      'from x (\\(escaped [1.2.3.4]) by y',
      'from \0\x01\x02 ([5.6.7.8]\0) by \x7f',
      'from x (y [::ffff:10.0.0.1]) by z',
      'Received:',
      'Received: \r\n\r\n\r\n',
      null,
      42,
      { from: 'x' },
      'from x (y [1.2.3.4]\nby z', // a bare value with a raw newline
    ];
    for (const n of nasty) {
      const rs = receivedRelays(n as string);
      for (const r of rs) {
        if (r.ip) expect(r.ip).toMatch(/^[0-9a-f.:]+$/);
        for (const v of [r.from, r.helo, r.rdns, r.by, r.id, r.for]) {
          if (v !== undefined) expect(v.length).toBeLessThanOrEqual(RECEIVED_LIMITS.maxField);
        }
        expect(r.text.length).toBeLessThanOrEqual(998);
      }
    }
    expect(receivedRelays('from x ([999.1.1.1]) by y')[0]?.ip).toBeUndefined();
    expect(receivedRelays('from x (y [::ffff:10.0.0.1]) by z')[0]?.ip).toBe('10.0.0.1');
    expect(receivedRelays(null as never)).toEqual([]);
    expect(receivedRelays([null, 1, 'from a ([192.0.2.9]) by b'] as never).map((r) => r.ip)).toEqual([
      '192.0.2.9',
    ]);
  });

  it('reads at most maxHeaders headers', () => {
    const many = Array.from({ length: 10_000 }, (_, i) => `Received: from h${i} ([192.0.2.1]) by x`).join(
      '\r\n',
    );
    expect(receivedRelays(many)).toHaveLength(RECEIVED_LIMITS.maxHeaders);
  });

  it('survives a seeded fuzz of 5000 header-ish strings', () => {
    // A small LCG (Numerical Recipes constants): the same cases every run.
    let seed = 0x5eed;
    const rnd = (n: number) => {
      seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0;
      return seed % n;
    };
    const parts = [
      'from',
      'by',
      'with',
      'id',
      'for',
      '(',
      ')',
      '[',
      ']',
      ';',
      ' ',
      '\t',
      '\r\n ',
      'helo=',
      'HELO',
      '1.2.3.4',
      'IPv6:',
      '2001:db8::1',
      ':25',
      'unknown',
      'a.example.',
      '<x@y>',
      '\\',
      '\0',
      'é',
      '=',
    ];
    for (let i = 0; i < 5000; i++) {
      let s = rnd(2) ? 'Received: ' : '';
      const len = rnd(40);
      for (let k = 0; k < len; k++) s += parts[rnd(parts.length)];
      const rs = receivedRelays(s);
      for (const r of rs) if (r.ip) expect(r.ip).toMatch(/^[0-9a-f.:]+$/);
    }
  });
});

describe('scoreReceived: points, never a verdict', () => {
  const headers = [
    'from mx.example.org (localhost [127.0.0.1]) by mx.example.org with ESMTP id A; Mon, 1 Jan 2024 00:00:00 +0000',
    'from relay.isp.example (relay.isp.example [62.157.140.133]) by mx.example.org with ESMTPS id B; d',
    'from [10.0.0.5] (p5b0a1c2d.dip0.t-ipconnect.de [91.10.28.45]) by relay.isp.example with ESMTPSA id C; d',
    'from laptop (unknown [85.214.1.2]) by relay.isp.example with ESMTPSA id D; d',
  ];

  it('scores listed public relays below ours, skipping the top, the client, private and trusted addresses', async () => {
    const asked: string[] = [];
    const listed = (ip: string) => {
      asked.push(ip);
      return ip === '91.10.28.45' ? 'pbl.example' : undefined;
    };
    const f = await scoreReceived(headers, {
      listed,
      clientAddress: '62.157.140.133',
      trusted: ['85.214.0.0/16'],
    });
    expect(asked).toEqual(['91.10.28.45']);
    expect(f).toEqual([{ check: 'received', tag: 'relay-listed:pbl.example:91.10.28.45', score: 0.5 }]);
  });

  it('caps the total at maxScore', async () => {
    const all = async () => 'zen.example';
    const f = await scoreReceived(headers, { listed: all, skipTop: 0, score: 0.75, maxScore: 1 });
    expect(f.reduce((s, x) => s + x.score, 0)).toBe(1);
    expect(f.map((x) => x.score)).toEqual([0.75, 0.25]);
  });

  it('a failing lookup counts as not listed', async () => {
    const f = await scoreReceived(headers, {
      listed: async () => {
        throw new Error('SERVFAIL');
      },
    });
    expect(f).toEqual([]);
  });

  it('accepts relays already parsed', async () => {
    const relays = receivedRelays(headers);
    expect(await scoreReceived(relays, { listed: () => 'x' })).toHaveLength(2);
  });

  it('its result is findings only: they feed weigh() and cannot reject beyond the cap', async () => {
    expectTypeOf(scoreReceived).returns.resolves.toEqualTypeOf<ReceivedFinding[]>();
    expectTypeOf<ReceivedFinding>().toMatchTypeOf<Finding>();
    const findings = await scoreReceived(headers, { listed: () => 'zen.example', skipTop: 0 });
    // Every relay listed: the cap (1) stays below a sane threshold, so the message goes on.
    const dataStage = { name: 'data-noop', stage: 'data' as const, run: () => next() };
    const c = chain([weigh({ checks: [dataStage], reject: 5 })], { clock: new ManualClock(0) });
    const d = await c.evaluate({ clientAddress: '62.157.140.133', stage: 'data' }, findings);
    expect(d.action).toBe('next');
    expect(d.findings.reduce((s, x) => s + (x.score ?? 0), 0)).toBe(1);
  });

  it('refuses bad options', async () => {
    await expect(scoreReceived(headers, { listed: undefined as never })).rejects.toThrow(TypeError);
    await expect(scoreReceived(headers, { listed: () => 'x', maxScore: -1 })).rejects.toThrow(TypeError);
  });
});
