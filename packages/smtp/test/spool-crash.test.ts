/**
 * The spool's promise under a crash: a message the gateway answered 250 for is on disk, whole,
 * even when the process is killed with SIGKILL in the middle of a stream of messages from many
 * connections (the folder fsync is shared by the messages that arrive together, and a 250 still
 * waits for the fsync that covers its own rename). A killed process leaves the page cache to the
 * kernel, so this shows the order of the steps (no 250 before the rename is done and synced), not
 * what a power cut would keep; that rests on the fsyncs the code makes.
 */
import { type ChildProcessWithoutNullStreams, spawn } from 'node:child_process';
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { readSpoolFile } from '@mxguard/smtp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { poolTransport } from '../../../testing/mail-load.js';
import { tempDir } from './helpers.js';

const fixture = fileURLToPath(new URL('./fixtures/crash-gateway.ts', import.meta.url));

function startChild(dir: string): Promise<{ child: ChildProcessWithoutNullStreams; port: number }> {
  const child = spawn(process.execPath, ['--import', 'tsx', fixture, dir]);
  return new Promise((resolve, reject) => {
    let out = '';
    let err = '';
    child.stderr.on('data', (b: Buffer) => {
      err += b.toString();
    });
    child.stdout.on('data', (b: Buffer) => {
      out += b.toString();
      const m = /^(\d+)\n/.exec(out);
      if (m) resolve({ child, port: Number(m[1]) });
    });
    child.once('exit', (code) => reject(new Error(`gateway exited ${code}: ${err}`)));
  });
}

describe('spool: every acknowledged message survives kill -9', () => {
  let spool: { dir: string; remove: () => Promise<void> };
  beforeAll(async () => {
    spool = await tempDir('mxguard-spool-crash-');
  });
  afterAll(async () => {
    await spool.remove();
  });

  it('counts the 250s and finds each of their messages on disk, whole', async () => {
    const { child, port } = await startChild(spool.dir);
    const exited = new Promise<void>((r) => child.once('exit', () => r()));
    const connections = 16;
    const transport = poolTransport(port, connections);
    const acked = new Map<string, string>(); // spool id -> the body sent
    let failed = 0;
    let killed = false;
    const killAfter = 60;
    let n = 0;
    await Promise.all(
      Array.from({ length: connections }, async () => {
        // Bounded: each sender stops at the kill, or after 40 messages whatever happens.
        for (let i = 0; i < 40 && !killed; i++) {
          const body = `Subject: crash ${n++}\r\n\r\n${'x'.repeat(200 + (n % 97))}\r\n`;
          try {
            const info = await transport.sendMail({
              envelope: { from: 'a@sender.example.net', to: ['user@example.com'] },
              raw: body,
            });
            const m = /queued as (\S+)/.exec(info.response);
            if (!m?.[1]) throw new Error(`no spool id in ${info.response}`);
            acked.set(m[1], body);
            if (acked.size >= killAfter && !killed) {
              // Kill while the other senders are in the middle of their messages.
              killed = true;
              child.kill('SIGKILL');
            }
          } catch {
            failed++;
          }
        }
      }),
    );
    transport.close();
    if (!killed) child.kill('SIGKILL');
    await exited;
    expect(killed).toBe(true);
    expect(acked.size).toBeGreaterThanOrEqual(killAfter);
    const files = new Set((await readdir(spool.dir)).filter((f) => f.endsWith('.msg')));
    for (const [id, body] of acked) {
      expect(files.has(`${id}.msg`), `acknowledged ${id} is on disk`).toBe(true);
      const { envelope, message } = await readSpoolFile(join(spool.dir, `${id}.msg`));
      expect(envelope.id).toBe(id);
      expect(envelope.rcptTo).toEqual(['user@example.com']);
      expect(message.toString('latin1')).toBe(body);
    }
    // Every .msg file is whole (renamed only after it was written and synced), acknowledged or not.
    for (const f of files) await readSpoolFile(join(spool.dir, f));
    // Some transactions were cut by the kill, so the test did kill mid-stream.
    expect(failed).toBeGreaterThan(0);
  }, 60_000);
});
