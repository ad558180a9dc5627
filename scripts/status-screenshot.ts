/**
 * Takes docs/status-page.png: an hour of sessions judged by the real chain (the recommended preset
 * with the in-memory greylist and reputation, its DNS checks asking the project's test DNS server
 * on loopback, which serves two DNS lists and the senders' domains), each recorded on the status
 * board at its minute, the page served on a loopback port with the lists' real health and
 * photographed by Debian's chromium.
 * Run: npx tsx scripts/status-screenshot.ts [out=docs/status-page.png]
 */
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createRuntime, jsonLogger } from '../packages/cli/src/index.js';
import { healthOf } from '../packages/cli/src/observe.js';
import { StatusBoard } from '../packages/cli/src/status/board.js';
import { statusHandler } from '../packages/cli/src/status/handler.js';
import { statusHealth } from '../packages/cli/src/status/mount.js';
import type { Session } from '../packages/core/src/index.js';
import { TestDnsServer } from '../packages/dns/test/helpers/dns-server.js';
import { launchChromium } from '../testing/browser.js';

const out = process.argv[2] ?? 'docs/status-page.png';
const end = Date.UTC(2026, 11, 1, 14, 30, 0);
let now = end - 60 * 60_000;
const clock = { now: () => now };

// A seeded generator, so the picture is the same each run.
let seed = 42;
const rand = () => {
  seed = (seed * 1_103_515_245 + 12_345) % 2 ** 31;
  return seed / 2 ** 31;
};
const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)] as T;

// The DNS the chain asks: two lists with their test entries (127.0.0.2; example.test for the
// domain list), some of the spam senders listed, and address records for the honest domains.
const dns = new TestDnsServer();
await dns.start();
dns.add('2.0.0.127.zen.example', { type: 'A', data: '127.0.0.2' });
dns.add('test.dbl.example', { type: 'A', data: '127.0.1.2' });
for (const ip of ['141.98.10.63', '103.145.13.9', '91.92.246.18']) {
  dns.add(`${ip.split('.').reverse().join('.')}.zen.example`, { type: 'A', data: '127.0.0.4' });
}
dns.add('deals.example.dbl.example', { type: 'A', data: '127.0.1.2' });
for (const d of [
  'gmail.example',
  'contoso.example',
  'deals.example',
  'promo.example',
  'bank-secure.example',
  'offers.example',
  'relay-attempt.example',
  'mail-wr1-f54.google.com',
  'EUR05-DB8-obe.outbound.protection.outlook.com',
  'mail.relay-attempt.example',
]) {
  dns.add(d, { type: 'A', data: '198.51.100.25' });
  dns.add(d, { type: 'MX', data: { preference: 10, exchange: d } });
}

const rt = await createRuntime(
  {
    ourDomains: ['example.com'],
    ourHosts: ['mx.example.com'],
    ourNetworks: ['192.0.2.0/24'],
    dnsLists: ['zen.example=127.0.0.[2..11]'],
    rhsLists: ['dbl.example=127.0.1.[2..99]'],
  },
  { resolver: dns.address, log: jsonLogger(() => {}) },
);
const board = new StatusBoard({ clock });

const honest: Partial<Session>[] = [
  {
    clientAddress: '209.85.128.54',
    rdns: { names: ['mail-wr1-f54.google.com'], verified: 'mail-wr1-f54.google.com' },
    helo: 'mail-wr1-f54.google.com',
    mailFrom: 'carol@gmail.example',
  },
  {
    clientAddress: '40.107.22.91',
    rdns: {
      names: ['mail-db8eur05on2091.outbound.protection.outlook.com'],
      verified: 'mail-db8eur05on2091.outbound.protection.outlook.com',
    },
    helo: 'EUR05-DB8-obe.outbound.protection.outlook.com',
    mailFrom: 'dave@contoso.example',
  },
];
const spam: Partial<Session>[] = [
  { clientAddress: '185.234.219.12', helo: 'localhost', mailFrom: 'info@deals.example' },
  { clientAddress: '45.95.147.30', helo: 'mx.example.com', mailFrom: 'ceo@example.com' },
  { clientAddress: '141.98.10.63', helo: 'User', mailFrom: 'noreply@promo.example' },
  { clientAddress: '103.145.13.9', helo: '103.145.13.9', mailFrom: 'admin@bank-secure.example' },
  {
    clientAddress: '91.92.246.18',
    rdns: { names: ['91-92-246-18.dyn.broadband.example'], verified: '91-92-246-18.dyn.broadband.example' },
    helo: 'win-8k2l3m4n5',
    mailFrom: 'sales@offers.example',
  },
  {
    clientAddress: '80.94.95.81',
    helo: 'mail.relay-attempt.example',
    mailFrom: 'x@relay-attempt.example',
    rcptTo: 'victim@elsewhere.example',
  },
];
const users = ['alice', 'bob', 'postmaster', 'sales', 'billing'];

for (; now < end; now += 20_000 + Math.floor(rand() * 20_000)) {
  rt.clock.set(now);
  const shape = rand() < 0.35 ? pick(honest) : pick(spam);
  const session = {
    stage: 'rcpt',
    rcptTo: `${pick(users)}@example.com`,
    ...shape,
  } as Session;
  board.record(session, await rt.policy.chain.evaluate(session), Math.floor(now / 1000).toString(36));
}

const handle = statusHandler(board, {
  title: 'mxguard serve on mx.example.com',
  health: async () => statusHealth(healthOf(rt)),
  notes: () => rt.notes,
  now: () => end,
});
const server = createServer((req, res) => {
  if (!handle(req, res)) res.writeHead(404).end();
});
await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
const browser = await launchChromium();
try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 1100 } });
  await page.goto(`http://127.0.0.1:${(server.address() as AddressInfo).port}/status`);
  await page.locator('#decisions tbody tr.reject').first().locator('summary').click();
  await page.screenshot({ path: out });
  console.log(`${out}: ${board.total} decisions over the hour`);
} finally {
  await browser.close();
  server.close();
  await rt.close();
  await dns.stop();
}
