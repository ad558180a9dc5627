/**
 * SIGHUP reloads the config of a running `mxguard serve` and `mxguard policy` (real processes):
 * new connections get the new config, a connection (or request) already in flight finishes under
 * the old one, a config that does not validate keeps the old one in force with one log line naming
 * the place in the config, and the stores are kept when their settings did not change.
 */
import { createSocket, type Socket as UdpSocket } from 'node:dgram';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { metric } from '../../../testing/metrics.js';
import { askPolicy, type Running, startMxguard } from '../../../testing/mxguard.js';
import { rcptRequest } from '../../../testing/postfix.js';
import { until } from '../../../testing/wait.js';

const dir = mkdtempSync(join(tmpdir(), 'mxguard-reload-'));
const running: Running[] = [];
afterAll(async () => {
  await Promise.all(running.map((r) => r.stop()));
});

function write(path: string, config: object | string): void {
  writeFileSync(path, typeof config === 'string' ? config : JSON.stringify(config));
}

/** A line-by-line SMTP client on a raw socket: each `send` resolves with the whole reply. */
class SmtpClient {
  readonly #sock: Socket;
  #buf = '';
  #waiting: ((reply: string) => void) | undefined;

  private constructor(sock: Socket) {
    this.#sock = sock;
    sock.setEncoding('utf8');
    sock.on('data', (d: string) => {
      this.#buf += d;
      this.#deliver();
    });
  }

  #deliver(): void {
    // A reply is complete at its last line: "ddd " (not "ddd-").
    const m = /(?:^|\r\n)(\d{3}) [^\r\n]*\r\n/.exec(this.#buf);
    if (!m || !this.#waiting) return;
    const end = m.index + m[0].length;
    const reply = this.#buf.slice(0, end).trim();
    this.#buf = this.#buf.slice(end);
    const w = this.#waiting;
    this.#waiting = undefined;
    w(reply);
  }

  #next(): Promise<string> {
    return new Promise((resolve) => {
      this.#waiting = resolve;
      this.#deliver();
    });
  }

  static async open(port: number): Promise<{ client: SmtpClient; greeting: string }> {
    const sock = connect(port, '127.0.0.1');
    await new Promise<void>((resolve, reject) => {
      sock.once('connect', resolve);
      sock.once('error', reject);
    });
    const client = new SmtpClient(sock);
    return { client, greeting: await client.#next() };
  }

  send(line: string): Promise<string> {
    const reply = this.#next();
    this.#sock.write(`${line}\r\n`);
    return reply;
  }

  close(): void {
    this.#sock.destroy();
  }
}

/** HELO, MAIL and RCPT on a new connection; resolves with the RCPT reply. */
async function rcptOnNewConnection(port: number, rcpt: string, helo = 'mail.example.net'): Promise<string> {
  const { client } = await SmtpClient.open(port);
  try {
    await client.send(`EHLO ${helo}`);
    await client.send('MAIL FROM:<alice@example.net>');
    return await client.send(`RCPT TO:<${rcpt}>`);
  } finally {
    client.close();
  }
}

/** Sends SIGHUP and waits for the reload's log line (the n-th of its kind). */
async function hangup(r: Running, event: 'reloaded' | 'reload-refused', nth = 1): Promise<string> {
  r.child.kill('SIGHUP');
  const re = new RegExp(`"event":"${event}"`);
  const deadline = Date.now() + 15_000;
  for (;;) {
    const lines = r
      .stderr()
      .split('\n')
      .filter((l) => re.test(l));
    if (lines.length >= nth) return lines[nth - 1] as string;
    if (Date.now() > deadline) throw new Error(`no ${event} line: ${r.stderr().slice(-2000)}`);
    await new Promise((res) => setTimeout(res, 50));
  }
}

describe('mxguard serve: SIGHUP', () => {
  it('new connections get the new config, an open one keeps the old, a broken one is refused with its path', async () => {
    const config = join(dir, 'serve.json');
    write(config, { ourDomains: ['example.com'], ourHosts: ['mx.example.com'] });
    const s = await startMxguard('serve', [
      '--offline',
      '--config',
      config,
      '--spool',
      join(dir, 'spool'),
      '--http',
      '127.0.0.1:0',
    ]);
    running.push(s);
    expect(await rcptOnNewConnection(s.port, 'postmaster@example.com')).toMatch(/^250 /);

    // A connection opened under the first config, in the middle of its transaction.
    const { client: old } = await SmtpClient.open(s.port);
    await old.send('EHLO mail.example.net');
    expect(await old.send('MAIL FROM:<alice@example.net>')).toMatch(/^250 /);

    // The site moves to example.org, and a HELO that claims to be one of us is now only logged.
    write(config, { ourDomains: ['example.org'], ourHosts: ['mx.example.org'], warn: ['helo-claims-us'] });
    const line = JSON.parse(await hangup(s, 'reloaded')) as Record<string, unknown>;
    expect(line).toMatchObject({ level: 'info', event: 'reloaded', config });

    // New connections: example.com is no longer ours (relay control), example.org is.
    expect(await rcptOnNewConnection(s.port, 'postmaster@example.com')).toMatch(/^554 5\.7\.1 /);
    expect(await rcptOnNewConnection(s.port, 'postmaster@example.org')).toMatch(/^250 /);
    expect(await rcptOnNewConnection(s.port, 'postmaster@example.org', 'mx.example.org')).toMatch(/^250 /);

    // The connection in flight finishes under the config it started with.
    expect(await old.send('RCPT TO:<postmaster@example.com>')).toMatch(/^250 /);
    expect(await old.send('RCPT TO:<postmaster@example.org>')).toMatch(/^554 5\.7\.1 /);
    expect(await old.send('DATA')).toMatch(/^354 /);
    expect(await old.send('Subject: before the reload\r\n\r\nhello\r\n.')).toMatch(/^250 /);
    old.close();

    // A config that does not validate: the one in force stays, and the log says where and why.
    write(config, { ourDomains: ['example.net'], chekcs: ['helo-claims-us'] });
    const refused = JSON.parse(await hangup(s, 'reload-refused')) as Record<string, unknown>;
    expect(refused).toMatchObject({
      level: 'error',
      event: 'reload-refused',
      config,
      msg: 'reload refused: the config in force stays',
    });
    expect(refused.path).toBe('chekcs');
    expect(refused.err).toBe('config.chekcs: unknown key; did you mean "checks"?');
    expect(await rcptOnNewConnection(s.port, 'postmaster@example.org')).toMatch(/^250 /);
    expect(await rcptOnNewConnection(s.port, 'postmaster@example.net')).toMatch(/^554 5\.7\.1 /);
    // Not JSON at all: refused too.
    write(config, '{"ourDomains": [');
    const notJson = JSON.parse(await hangup(s, 'reload-refused', 2)) as Record<string, unknown>;
    expect(notJson.err).toMatch(/not JSON/);
    expect(await rcptOnNewConnection(s.port, 'postmaster@example.org')).toMatch(/^250 /);

    // The config's gateway limits apply to new connections; a changed budget needs a restart.
    write(config, { ourDomains: ['example.org'], gateway: { recipientLimit: 1 } });
    await hangup(s, 'reloaded', 2);
    const { client } = await SmtpClient.open(s.port);
    await client.send('EHLO mail.example.net');
    await client.send('MAIL FROM:<alice@example.net>');
    expect(await client.send('RCPT TO:<a@example.org>')).toMatch(/^250 /);
    expect(await client.send('RCPT TO:<b@example.org>')).toMatch(/^452 4\.5\.3 /);
    client.close();
    write(config, { ourDomains: ['example.org'], gateway: { budget: '20s' } });
    const budget = JSON.parse(await hangup(s, 'reload-refused', 3)) as Record<string, unknown>;
    expect(budget).toMatchObject({ path: 'gateway.budget' });

    expect(await metric(s.http, 'mxguard_reloads_total', { outcome: 'ok' })).toBe(2);
    expect(await metric(s.http, 'mxguard_reloads_total', { outcome: 'refused' })).toBe(3);
  });
});

describe('mxguard serve --log-file: SIGHUP', () => {
  it('a log file that cannot be opened again is said on stderr and the gateway goes on; the next SIGHUP opens it', async () => {
    const config = join(dir, 'log-file.json');
    write(config, { ourDomains: ['example.com'], ourHosts: ['mx.example.com'] });
    const logs = join(dir, 'logs');
    const logFile = join(logs, 'mxguard.log');
    const s = await startMxguard('serve', [
      '--offline',
      '--config',
      config,
      '--spool',
      join(dir, 'spool-log'),
      '--log-file',
      logFile,
    ]);
    running.push(s);
    expect(await rcptOnNewConnection(s.port, 'postmaster@example.com')).toMatch(/^250 /);

    // The log's directory gone, and a file in its place: the log file cannot be opened again.
    rmSync(logs, { recursive: true });
    writeFileSync(logs, 'not a directory');
    s.child.kill('SIGHUP');
    expect(await s.waitLog(/^mxguard: log file /)).toContain(logFile);
    expect(s.child.exitCode).toBeNull();
    expect(await rcptOnNewConnection(s.port, 'postmaster@example.com')).toMatch(/^250 /);
    expect(s.child.exitCode).toBeNull();

    // Once the directory can be made again, the next SIGHUP opens the file and the log goes there.
    rmSync(logs);
    s.child.kill('SIGHUP');
    await until(async () => (existsSync(logFile) ? true : undefined), 10_000);
    expect(await rcptOnNewConnection(s.port, 'postmaster@example.com')).toMatch(/^250 /);
    await until(
      async () => (/"stage":"rcpt"/.test(readFileSync(logFile, 'utf8')) ? true : undefined),
      10_000,
    );
  });
});

describe('mxguard policy: SIGHUP', () => {
  let blackhole: UdpSocket;
  afterAll(() => blackhole?.close());

  it('a request in flight finishes under the old config; the greylist store is kept', async () => {
    // A DNS server that never answers: a request that asks it waits for its lookups to time out.
    blackhole = createSocket('udp4');
    await new Promise<void>((r) => blackhole.bind(0, '127.0.0.1', r));
    const dnsPort = blackhole.address().port;
    const config = join(dir, 'policy.json');
    const site = { ourDomains: ['example.com'], ourHosts: ['mx.example.com'] };
    write(config, { ...site, dnsLists: ['bl.test'], options: { greylist: { mode: 'all' } } });
    const p = await startMxguard('policy', [
      '--resolver',
      `127.0.0.1:${dnsPort}`,
      '--budget',
      '3000',
      '--config',
      config,
      '--http',
      '127.0.0.1:0',
    ]);
    running.push(p);
    const triplet = {
      client_address: '198.51.100.7',
      client_name: 'unknown',
      reverse_client_name: 'unknown',
    };

    // Greylisted on its first try (every client is).
    expect(await askPolicy(p.port, [rcptRequest({ ...triplet, instance: 'r.1' })])).toEqual([
      expect.stringMatching(/^DEFER_IF_PERMIT |^4\d\d /),
    ]);
    expect(await metric(p.http, 'mxguard_greylist_outcomes_total', { outcome: 'new' })).toBe(1);

    // A request whose DNS lookups hang, sent before the reload and answered after it.
    const claimsUs = rcptRequest({ helo_name: 'localhost', client_address: '192.0.2.77', instance: 'r.2' });
    let answeredAt = 0;
    const inFlight = askPolicy(p.port, [claimsUs]).then((a) => {
      answeredAt = Date.now();
      return a;
    });
    await new Promise((r) => setTimeout(r, 200));
    // The new config: a global dry run (nothing is refused), the same greylist settings.
    write(config, { ...site, dnsLists: ['bl.test'], options: { greylist: { mode: 'all' } }, mode: 'warn' });
    await hangup(p, 'reloaded');
    const reloadedAt = Date.now();
    const [old] = await inFlight;
    expect(answeredAt).toBeGreaterThanOrEqual(reloadedAt);
    expect(old).not.toBe('DUNNO');
    // New requests: judged, logged as "would", not refused.
    expect(await askPolicy(p.port, [{ ...claimsUs, instance: 'r.3' }])).toEqual(['DUNNO']);

    // The same greylist store: the same triplet is an early retry, not a new one.
    await askPolicy(p.port, [rcptRequest({ ...triplet, instance: 'r.4' })]);
    expect(await metric(p.http, 'mxguard_greylist_outcomes_total', { outcome: 'early' })).toBe(1);
    expect(await metric(p.http, 'mxguard_greylist_outcomes_total', { outcome: 'new' })).toBe(1);

    // The policy server's limits are read at start: a config that changes them is refused.
    write(config, { ...site, dnsLists: ['bl.test'], policy: { maxConnections: 10 } });
    const refused = JSON.parse(await hangup(p, 'reload-refused')) as Record<string, unknown>;
    expect(refused).toMatchObject({ path: 'policy' });
    expect(refused.err).toMatch(/restart to apply them/);
  });
});
