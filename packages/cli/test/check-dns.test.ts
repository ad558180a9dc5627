/**
 * `mxguard check --resolver HOST:PORT` against a real authoritative DNS server (nsd, from Debian)
 * on loopback, serving test zones and a DNS list as plain records: the DNS checks run in the
 * recommended preset exactly as a user runs them.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Daemon, startNsd } from '../../dns/test/helpers/daemons.js';

const bin = fileURLToPath(new URL('../dist/bin.js', import.meta.url));
const dir = mkdtempSync(join(tmpdir(), 'mxguard-check-dns-'));
let nsd: Daemon;
let configPath: string;
let scoringPath: string;

const SOA = (o: string) =>
  `$ORIGIN ${o}.\n$TTL 300\n@ SOA ns.${o}. host.${o}. 1 3600 600 86400 300\n@ NS ns.${o}.\nns A 127.0.0.1\n`;

beforeAll(async () => {
  nsd = await startNsd({
    test: `${SOA('test')}
mail A 192.0.2.10
ok MX 10 mail.test.
dest MX 10 mail.test.
null MX 0 .
other A 192.0.2.1
; the DNS list bl.test, as records: 127.0.0.2 is the RFC 5782 test entry, 127.0.0.1 is absent
2.0.0.127.bl A 127.0.0.2
2.0.0.127.bl TXT "test entry"
99.2.0.192.bl A 127.0.0.2
99.2.0.192.bl TXT "Listed by bl.test"
; a public address that only ever appears in a Received header of the tests (never contacted)
45.28.10.91.bl A 127.0.0.2
; an allowlist (DNSWL-style answers 127.0.<category>.<trust>) and a right-hand-side list of names
2.0.0.127.wl A 127.0.10.2
50.2.0.192.wl A 127.0.10.3
test.dbl A 127.0.1.2
spammer.test.dbl A 127.0.1.2
spammer.test.dbl TXT "Spam domain spammer.test"
spammer MX 10 mail.test.
listed A 192.0.2.50
`,
    '2.0.192.in-addr.arpa': `${SOA('2.0.192.in-addr.arpa')}
10 PTR mail.test.
50 PTR listed.test.
98 PTR other.test.
99 PTR mail.test.
`,
  });
  configPath = join(dir, 'config.json');
  writeFileSync(
    configPath,
    JSON.stringify({
      ourDomains: ['dest.test'],
      dnsLists: ['bl.test=127.0.0.[2..11]*3', 'wl.test=127.0.[0..255].[1..3]*-2'],
      rhsLists: ['dbl.test=127.0.1.[2..99]'],
      helpUrl: 'https://dest.test/help',
    }),
  );
  // Scores instead of refusals: a missing PTR is 2 points at RCPT, a listed Received relay 0.5 at
  // DATA, and a data-stage weigh refuses at 2.5: the headers tip a doubted sender, never decide.
  scoringPath = join(dir, 'scoring.json');
  writeFileSync(
    scoringPath,
    JSON.stringify({
      ourDomains: ['dest.test'],
      checks: [
        'relay',
        { name: 'rdns-missing', action: 'score', score: 2 },
        { name: 'received', lists: ['bl.test=127.0.0.[2..11]'] },
        { name: 'weigh', reject: 2.5, stage: 'data' },
      ],
    }),
  );
}, 60_000);

afterAll(async () => {
  await nsd?.stop();
});

function check(lines: object[], config = configPath) {
  const r = spawnSync(process.execPath, [bin, 'check', '--resolver', nsd.address, '--config', config], {
    input: lines.map((l) => JSON.stringify(l)).join('\n'),
    encoding: 'utf8',
    timeout: 30_000,
  });
  expect(r.stderr).not.toMatch(/"level":"error"/);
  return r.stdout
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as Record<string, unknown>);
}

const clean = { ip: '192.0.2.10', helo: 'mail.test', mailFrom: 'a@ok.test', rcptTo: 'b@dest.test' };

describe('mxguard check --resolver (real nsd on loopback)', () => {
  it('a forward-confirmed client with an existing sender domain passes every DNS check', () => {
    const [out] = check([clean]);
    expect(out).toMatchObject({ action: 'next' });
    const trace = out!.trace as { check: string; action: string; reason?: string }[];
    for (const name of ['sender-domain', 'recipient-domain', 'dnsbl', 'fcrdns', 'rdns-missing']) {
      const step = trace.find((s) => s.check === name);
      expect(step, name).toBeDefined();
      expect(step?.reason ?? '', name).not.toMatch(/offline|temporary/);
    }
  });

  it('a client on the DNS list is refused with the list and its TXT reason', () => {
    const [out] = check([{ ...clean, ip: '192.0.2.99' }]);
    expect(out).toMatchObject({ action: 'reject', check: 'dnsbl', code: 554, enhanced: '5.7.1' });
    expect(out?.text).toContain('blocked using bl.test; Listed by bl.test');
  });

  it('"dnsLists" with a negative weight is an allowlist (accept); "rhsLists" judges the sender domain', () => {
    const [allow, rhs] = check([
      { ...clean, ip: '192.0.2.50', helo: 'listed.test' },
      { ...clean, mailFrom: 'x@spammer.test' },
    ]);
    expect(allow).toMatchObject({ action: 'accept', check: 'dnswl' });
    expect(rhs).toMatchObject({ action: 'reject', check: 'rhsbl', code: 554, enhanced: '5.7.1' });
    expect(rhs?.text).toContain(
      'Sender address [spammer.test] blocked using dbl.test; Spam domain spammer.test',
    );
  });

  it('a sender domain with a null MX is refused 550 5.7.27 (RFC 7505); one that does not exist is deferred 450', () => {
    const [nullMx, missing] = check([
      { ...clean, mailFrom: 'a@null.test' },
      { ...clean, mailFrom: 'a@nowhere.test' },
    ]);
    expect(nullMx).toMatchObject({ action: 'reject', check: 'sender-domain', code: 550, enhanced: '5.7.27' });
    expect(missing).toMatchObject({ action: 'defer', check: 'sender-domain', code: 450, enhanced: '4.1.8' });
  });

  it('without "ptr" the PTR is looked up: a name that does not resolve back to the client is a doubt, and the greylist delays it', () => {
    const [out] = check([{ ...clean, ip: '192.0.2.98', helo: 'other.test', time: 1_700_000_000 }]);
    expect(out).toMatchObject({ action: 'defer', check: 'greylist' });
    const trace = out!.trace as { check: string; findings?: { doubt?: boolean }[] }[];
    expect(trace.find((s) => s.check === 'fcrdns')?.findings?.[0]?.doubt).toBe(true);
  });

  it('"received" looks the relays of the "headers" up; a data-stage weigh adds them to the RCPT points', () => {
    const headers =
      'Received: from relay.isp.test (relay.isp.test [192.0.2.10]) by mx.dest.test; d\r\n' +
      'Received: from pc (p5b0a1c2d.dip0.t-ipconnect.de [91.10.28.45]) by relay.isp.test; d\r\n' +
      'Subject: hi\r\n';
    const unlisted = headers.replace('91.10.28.45', '91.10.28.46');
    const [tipped, named, unlistedOut] = check(
      [
        { ...clean, ptr: null, headers },
        { ...clean, ptr: 'mail.test', headers },
        { ...clean, ptr: null, headers: unlisted },
      ],
      scoringPath,
    );
    expect(tipped).toMatchObject({ action: 'reject', check: 'weigh-data', code: 554, enhanced: '5.7.1' });
    expect(tipped?.reason).toMatch(
      /^score 2\.5 .*rdns-missing:no-ptr=2.*received:relay-listed:bl\.test:91\.10\.28\.45=0\.5/,
    );
    expect(named).toMatchObject({ action: 'next' });
    expect(unlistedOut).toMatchObject({ action: 'next' });
  });
});
