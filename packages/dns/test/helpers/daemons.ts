/**
 * Starts the real DNS servers of the tests on loopback: rbldnsd (DNS lists) and nsd (authoritative
 * test zones), each with its own config and data under a temp dir, on a random high port (retried
 * if taken), in the foreground so the test owns and kills the process.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { Resolver } from 'node:dns/promises';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface Daemon {
  readonly port: number;
  readonly address: string;
  stop(): Promise<void>;
}

function randomPort(): number {
  return 20000 + Math.floor(Math.random() * 40000);
}

/** Waits until `probe` (a DNS name that must answer) resolves, or the process exits. */
async function waitReady(
  child: ChildProcess,
  port: number,
  probe: string,
  log: () => string,
): Promise<boolean> {
  const r = new Resolver({ timeout: 200, tries: 1 });
  r.setServers([`127.0.0.1:${port}`]);
  for (let i = 0; i < 50; i++) {
    if (child.exitCode !== null) return false;
    try {
      await r.resolve4(probe);
      return true;
    } catch (err) {
      const code = (err as { code?: string }).code;
      // NXDOMAIN/NODATA from the server also proves it is up.
      if (code === 'ENOTFOUND' || code === 'ENODATA') return true;
    }
    await new Promise((res) => setTimeout(res, 100));
  }
  throw new Error(`DNS server on port ${port} did not come up: ${log()}`);
}

async function startWithRetry(
  make: (port: number, dir: string) => { cmd: string; args: string[] },
  probe: string,
  files: Record<string, string>,
): Promise<Daemon> {
  const dir = mkdtempSync(join(tmpdir(), 'mxguard-dns-'));
  // Started as root, rbldnsd drops to its own user (rbldns): the data must be world-readable.
  chmodSync(dir, 0o755);
  for (const [name, text] of Object.entries(files)) writeFileSync(join(dir, name), text, { mode: 0o644 });
  let lastOutput = '';
  for (let attempt = 0; attempt < 8; attempt++) {
    const port = randomPort();
    const { cmd, args } = make(port, dir);
    // Its own process group: nsd forks xfrd and server children, and stop() must end them all.
    const child = spawn(cmd, args, { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    let out = '';
    child.stdout?.on('data', (d) => (out += d));
    child.stderr?.on('data', (d) => (out += d));
    child.on('error', (e) => (out += String(e)));
    const up = await waitReady(child, port, probe, () => out);
    if (!up) {
      if (child.pid !== undefined && child.exitCode === null) {
        try {
          process.kill(-child.pid, 'SIGKILL');
        } catch {}
      }
      lastOutput = out;
      continue; // port taken or similar: try another
    }
    return {
      port,
      address: `127.0.0.1:${port}`,
      async stop() {
        if (child.exitCode === null) {
          const exited = new Promise<void>((res) => child.once('exit', () => res()));
          const group = (sig: NodeJS.Signals) => {
            try {
              if (child.pid !== undefined) process.kill(-child.pid, sig);
            } catch {
              child.kill(sig);
            }
          };
          group('SIGTERM');
          const t = setTimeout(() => group('SIGKILL'), 3000);
          await exited;
          clearTimeout(t);
        }
        rmSync(dir, { recursive: true, force: true });
      },
    };
  }
  rmSync(dir, { recursive: true, force: true });
  throw new Error(`could not start ${make(0, dir).cmd}: ${lastOutput}`);
}

/**
 * rbldnsd serving `zones`: `{ 'bl.test': { type: 'ip4set', data: '...' } }`. rbldnsd runs in the
 * foreground (-n); as root it drops to the Debian package's `rbldns` user, so the temp dir is world-readable.
 */
export function startRbldnsd(
  zones: Record<string, { type: 'ip4set' | 'ip6trie' | 'dnset'; data: string }[]>,
): Promise<Daemon> {
  const files: Record<string, string> = {};
  const specs: string[] = [];
  let i = 0;
  for (const [zone, sets] of Object.entries(zones)) {
    for (const s of sets) {
      const f = `zone${i++}.${s.type}`;
      files[f] = s.data;
      specs.push(`${zone}:${s.type}:${f}`);
    }
  }
  const first = Object.keys(zones)[0] ?? 'bl.test';
  return startWithRetry(
    (port, dir) => ({
      cmd: '/usr/sbin/rbldnsd',
      args: ['-n', '-w', dir, '-b', `127.0.0.1/${port}`, '-t', '60', ...specs],
    }),
    `2.0.0.127.${first}`,
    files,
  );
}

/** nsd serving `zones` (name -> zone file text), authoritative only, state files in the temp dir. */
export function startNsd(zones: Record<string, string>): Promise<Daemon> {
  const files: Record<string, string> = {};
  const zoneConf: string[] = [];
  for (const [name, text] of Object.entries(zones)) {
    files[`${name}.zone`] = text;
    zoneConf.push(`zone:\n  name: "${name}"\n  zonefile: "${name}.zone"\n`);
  }
  const first = Object.keys(zones)[0] ?? 'test';
  return startWithRetry(
    (port, dir) => {
      writeFileSync(
        join(dir, 'nsd.conf'),
        [
          'server:',
          `  ip-address: 127.0.0.1@${port}`,
          `  port: ${port}`,
          '  username: ""',
          `  zonesdir: "${dir}"`,
          `  pidfile: "${dir}/nsd.pid"`,
          `  zonelistfile: "${dir}/zone.list"`,
          `  xfrdfile: "${dir}/xfrd.state"`,
          `  xfrdir: "${dir}"`,
          '  database: ""',
          '  server-count: 1',
          '  verbosity: 1',
          'remote-control:',
          '  control-enable: no',
          ...zoneConf,
        ].join('\n'),
      );
      return { cmd: '/usr/sbin/nsd', args: ['-d', '-c', join(dir, 'nsd.conf')] };
    },
    first,
    files,
  );
}
