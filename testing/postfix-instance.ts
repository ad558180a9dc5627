/**
 * A private Postfix (Debian's postfix 3.7) for tests and benchmarks: its own config, queue and
 * data directories under a temp dir, smtpd on loopback ports only, master in the foreground as our
 * child (so it cannot outlive the run unseen), its log in a file. Needs root (Postfix's daemons
 * drop to the postfix user).
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { closeSync, existsSync, openSync, readFileSync } from 'node:fs';
import { chmod, chown, mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export const POSTFIX = '/usr/sbin/postfix';

/** True when a private Postfix can run here (installed, and we are root). */
export const postfixAvailable = existsSync(POSTFIX) && process.getuid?.() === 0;

/** Options of {@link startPostfix}. */
export interface PostfixInstanceOptions {
  /** Lines added to main.cf (after the defaults, so they win). `$DIR` is the instance's folder. */
  readonly mainCf?: string;
  /** smtpd listeners: port -> extra smtpd arguments (`-o name=value ...`), '' for none. */
  readonly smtpd: Readonly<Record<number, string>>;
}

/** A running private Postfix. */
export interface PostfixInstance {
  /** The instance's folder: conf/, queue/, data/, mail/ (virtual mailboxes), maillog. */
  readonly dir: string;
  /** The log so far. */
  maillog(): string;
  /** Messages in the queue (every queue folder), by file count. */
  queued(): Promise<number>;
  /** Stops master (and kills it if it does not stop within 15 s); keeps the folder. */
  stop(): Promise<void>;
  /** Starts master again after `stop` (same config, queue and mailboxes). */
  start(): Promise<void>;
  /** Stops and removes the folder (unless KEEP is set in the environment). */
  close(): Promise<void>;
}

function accepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect(port, '127.0.0.1');
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

const svc = (name: string, type: string, priv: string, wakeup: string, maxproc: string, cmd: string) =>
  `${name} ${type} ${priv} - n ${wakeup} ${maxproc} ${cmd}`;

/**
 * Starts a private Postfix. Defaults: loopback only, `example.com` delivered by the `virtual`
 * agent to Maildirs under `mail/` for the users `virtual_mailbox_maps` lists (none unless mainCf
 * says), every other transport `error`, no DNS.
 */
export async function startPostfix(options: PostfixInstanceOptions): Promise<PostfixInstance> {
  const dir = await mkdtemp(join(tmpdir(), 'mxguard-postfix-'));
  // Postfix daemons drop to the postfix user: they must reach the queue, and own the data dir.
  await chmod(dir, 0o755);
  const conf = join(dir, 'conf');
  const data = join(dir, 'data');
  const mail = join(dir, 'mail');
  await mkdir(conf);
  await mkdir(join(dir, 'queue'));
  await mkdir(data);
  await mkdir(mail);
  const uid = Number(execFileSync('id', ['-u', 'postfix']).toString().trim());
  const gid = Number(execFileSync('id', ['-g', 'postfix']).toString().trim());
  await chown(data, uid, gid);
  await chown(mail, uid, gid);
  await writeFile(
    join(conf, 'main.cf'),
    `# A private Postfix for mxguard's tests: loopback only.
compatibility_level = 3.6
queue_directory = ${dir}/queue
data_directory = ${data}
mail_owner = postfix
setgid_group = postdrop
myhostname = mx.example.com
mydomain = example.com
mydestination =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
maillog_file = /dev/stdout
default_transport = error
local_transport = error
alias_maps =
alias_database =
smtp_dns_support_level = disabled
virtual_mailbox_domains = example.com
virtual_mailbox_base = ${mail}
virtual_uid_maps = static:${uid}
virtual_gid_maps = static:${gid}
${(options.mainCf ?? '').replaceAll('$DIR', dir)}
`,
  );
  const ports = Object.keys(options.smtpd).map(Number);
  await writeFile(
    join(conf, 'master.cf'),
    [
      ...ports.map((p) =>
        svc(`127.0.0.1:${p}`, 'inet', 'n', '-', '-', `smtpd ${options.smtpd[p] ?? ''}`.trim()),
      ),
      svc('pickup', 'unix', 'n', '60', '1', 'pickup'),
      svc('cleanup', 'unix', 'n', '-', '0', 'cleanup'),
      svc('qmgr', 'unix', 'n', '300', '1', 'qmgr'),
      svc('rewrite', 'unix', '-', '-', '-', 'trivial-rewrite'),
      svc('bounce', 'unix', '-', '-', '0', 'bounce'),
      svc('defer', 'unix', '-', '-', '0', 'bounce'),
      svc('trace', 'unix', '-', '-', '0', 'bounce'),
      svc('verify', 'unix', '-', '-', '1', 'verify'),
      svc('proxymap', 'unix', '-', '-', '-', 'proxymap'),
      svc('error', 'unix', '-', '-', '-', 'error'),
      svc('retry', 'unix', '-', '-', '-', 'error'),
      svc('discard', 'unix', '-', '-', '-', 'discard'),
      'virtual unix - n n - - virtual',
      svc('anvil', 'unix', '-', '-', '1', 'anvil'),
      svc('scache', 'unix', '-', '-', '1', 'scache'),
      svc('postlog', 'unix-dgram', 'n', '-', '1', 'postlogd'),
      '',
    ].join('\n'),
  );
  const logPath = join(dir, 'maillog');
  const maillog = () => (existsSync(logPath) ? readFileSync(logPath, 'utf8') : '');
  let master: ChildProcess | undefined;

  async function start(): Promise<void> {
    // Its stdout must be a file: Postfix opens /dev/stdout by name, which fails on the socket pair
    // node would give a piped child (ENXIO), and Postfix then exits 1 without a word.
    const fd = openSync(logPath, 'a');
    const m = spawn(POSTFIX, ['-c', conf, 'start-fg'], { stdio: ['ignore', fd, fd] });
    closeSync(fd);
    master = m;
    const exited = new Promise<void>((resolve) => m.once('exit', () => resolve()));
    for (let i = 0; i < 300; i++) {
      const up = await Promise.all(ports.map(accepts));
      if (up.every(Boolean)) return;
      const done = await Promise.race([
        exited.then(() => true),
        new Promise<false>((r) => setTimeout(() => r(false), 100)),
      ]);
      if (done) break;
    }
    throw new Error(`postfix did not start:\n${maillog()}`);
  }

  async function stop(): Promise<void> {
    const m = master;
    if (!m || m.exitCode !== null || m.signalCode !== null) return;
    const exited = new Promise<void>((resolve) => m.once('exit', () => resolve()));
    try {
      execFileSync(POSTFIX, ['-c', conf, 'stop'], { stdio: 'ignore' });
    } catch {
      // master is killed below
    }
    const stopped = await Promise.race([
      exited.then(() => true),
      new Promise<false>((r) => setTimeout(() => r(false), 15_000)),
    ]);
    if (!stopped) m.kill('SIGKILL');
  }

  async function queued(): Promise<number> {
    let n = 0;
    for (const q of ['maildrop', 'incoming', 'active', 'deferred', 'hold']) {
      const walk = async (d: string): Promise<void> => {
        const entries = await readdir(d, { withFileTypes: true }).catch(() => []);
        for (const e of entries) {
          if (e.isDirectory()) await walk(join(d, e.name));
          else n++;
        }
      };
      await walk(join(dir, 'queue', q));
    }
    return n;
  }

  try {
    await start();
  } catch (err) {
    await stop();
    if (!process.env.KEEP) await rm(dir, { recursive: true, force: true });
    throw err;
  }
  return {
    dir,
    maillog,
    queued,
    stop,
    start,
    async close() {
      await stop();
      if (!process.env.KEEP) await rm(dir, { recursive: true, force: true });
    },
  };
}

/** Every message file in the Maildirs under `mail/` (new/ and cur/), as paths. */
export async function maildirMessages(instance: PostfixInstance): Promise<string[]> {
  const out: string[] = [];
  const walk = async (d: string): Promise<void> => {
    const entries = await readdir(d, { withFileTypes: true }).catch(() => []);
    for (const e of entries) {
      const p = join(d, e.name);
      if (e.isDirectory()) await walk(p);
      else if (/\/(new|cur)$/.test(d)) out.push(p);
    }
  };
  await walk(join(instance.dir, 'mail'));
  return out;
}
