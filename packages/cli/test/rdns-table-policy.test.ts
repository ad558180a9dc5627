/**
 * The seed's restriction 12 through `mxguard policy` under a real Postfix 3.7: smtpd asks the
 * policy server (check_policy_service) at RCPT; a Postfix-format regexp table of dynamic-pool
 * patterns named in one config line makes a client whose name matches it greylisted (450 4.2.0),
 * then accepted and delivered on retry. swaks sets the client's name and address with XCLIENT
 * (Postfix's own test hook, allowed from loopback only), so no real DNS is needed: the policy server
 * judges the names Postfix hands it.
 */
import { type ChildProcessWithoutNullStreams, spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort } from '../../../testing/net.js';
import {
  maildirMessages,
  type PostfixInstance,
  postfixAvailable,
  startPostfix,
} from '../../../testing/postfix-instance.js';

const bin = fileURLToPath(new URL('../dist/bin.js', import.meta.url));
const available = postfixAvailable && spawnSync('swaks', ['--version']).status === 0;

describe.skipIf(!available)(
  'mxguard policy under a real Postfix: an admin table of dynamic pools greylists',
  () => {
    const dir = mkdtempSync(join(tmpdir(), 'mxguard-rdns-policy-'));
    const table = join(dir, 'dynamic_pools');
    let child: ChildProcessWithoutNullStreams;
    let postfix: PostfixInstance;
    let smtpPort = 0;
    let stderr = '';

    beforeAll(async () => {
      writeFileSync(
        table,
        `# /etc/postfix/dynamic_pools, as the seed wrote it for check_client_access
/^gw[0-9]+\\.custnet\\.example$/   REJECT dynamic pool
/^mail\\./                         DUNNO
`,
      );
      const config = join(dir, 'mxguard.json');
      writeFileSync(
        config,
        JSON.stringify({
          ourDomains: ['example.com'],
          options: {
            'rdns-dynamic': { patterns: `regexp:${table}` },
            greylist: { delay: 1 },
          },
        }),
      );
      child = spawn(process.execPath, [
        bin,
        'policy',
        '--offline',
        '--config',
        config,
        '--listen',
        '127.0.0.1:0',
      ]);
      child.stderr.on('data', (b: Buffer) => {
        stderr += b.toString();
      });
      let banner = '';
      const policyPort = await new Promise<number>((resolve, reject) => {
        const timer = setTimeout(
          () => reject(new Error(`policy server did not start: ${banner}${stderr}`)),
          30_000,
        );
        child.stdout.on('data', (b: Buffer) => {
          banner += b.toString();
          const m = /listening on inet:127\.0\.0\.1:(\d+)/.exec(banner);
          if (m && banner.includes('main.cf')) {
            clearTimeout(timer);
            resolve(Number(m[1]));
          }
        });
        child.on('exit', (code) => reject(new Error(`policy server exited ${code}: ${banner}${stderr}`)));
      });
      smtpPort = await freePort();
      postfix = await startPostfix({
        mainCf: `virtual_mailbox_maps = inline:{ bob@example.com=bob/ }
smtpd_authorized_xclient_hosts = 127.0.0.0/8
smtpd_policy_service_retry_delay = 1s
smtpd_recipient_restrictions = check_policy_service inet:127.0.0.1:${policyPort}, permit
`,
        smtpd: { [smtpPort]: '' },
      });
    }, 90_000);

    afterAll(async () => {
      await postfix?.close();
      if (child && child.exitCode === null) {
        const exited = new Promise((r) => child.once('exit', r));
        child.kill('SIGTERM');
        await exited;
      }
      rmSync(dir, { recursive: true, force: true });
    });

    /** A whole message from a client Postfix believes is `name` [`addr`] (XCLIENT). */
    function send(name: string, addr: string): string {
      const r = spawnSync(
        'swaks',
        [
          '--server',
          `127.0.0.1:${smtpPort}`,
          '--xclient-name',
          name,
          '--xclient-addr',
          addr,
          '--helo',
          name,
          '--from',
          'alice@example.net',
          '--to',
          'bob@example.com',
          '--timeout',
          '20',
        ],
        { encoding: 'utf8', timeout: 30_000 },
      );
      return `${r.stdout}${r.stderr}`;
    }

    it('a client whose name is not in the table is accepted at once', () => {
      expect(send('gw8.othernet.example', '198.51.100.8')).toMatch(/<- +250 2\.0\.0 Ok: queued as /);
    });

    it('a client whose name matches the table is greylisted 450 4.2.0, then accepted and delivered on retry', async () => {
      const before = (await maildirMessages(postfix)).length;
      const first = Date.now();
      expect(send('gw7.custnet.example', '203.0.113.7')).toMatch(
        /<\*\* +450 4\.2\.0 <bob@example\.com>: Recipient address rejected: Greylisted, please retry in 1 seconds/,
      );
      expect(postfix.maillog()).toMatch(
        /NOQUEUE: reject: RCPT from gw7\.custnet\.example\[203\.0\.113\.7\]: 450 4\.2\.0/,
      );
      await new Promise((r) => setTimeout(r, Math.max(0, first + 1_100 - Date.now())));
      let retry = send('gw7.custnet.example', '203.0.113.7');
      for (let i = 0; i < 5 && !/<- +250 2\.0\.0 Ok: queued/.test(retry); i += 1) {
        await new Promise((r) => setTimeout(r, 500));
        retry = send('gw7.custnet.example', '203.0.113.7');
      }
      expect(retry).toMatch(/<- +250 2\.0\.0 Ok: queued as /);
      for (let i = 0; i < 100 && (await maildirMessages(postfix)).length <= before + 0; i++) {
        await new Promise((r) => setTimeout(r, 100));
      }
      expect((await maildirMessages(postfix)).length).toBeGreaterThan(before);
      // The policy log names the doubt behind the 450 (the table line is in the check's reason).
      expect(stderr).toMatch(
        /"client":"203\.0\.113\.7".*"reason":"greylist: new triplet .*doubt: rdns-dynamic\/dynamic"/,
      );
    });
  },
);
