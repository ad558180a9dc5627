/**
 * Runs testing/store-memory.ts in a process of its own (`node --expose-gc --import tsx`) and returns
 * what it measured: one in-memory store driven to ten times its byte bound.
 */
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { expect } from 'vitest';

const script = fileURLToPath(new URL('./store-memory.ts', import.meta.url));

export type StoreKind =
  | 'greylist-triplets'
  | 'greylist-clients'
  | 'reputation-scores'
  | 'reputation-windows'
  | 'callout'
  | 'anvil';

export interface StoreMemory {
  /** heapUsed + arrayBuffers after a full GC, before and after the inserts. */
  readonly before: number;
  readonly after: number;
  readonly inserted: number;
  /** Bytes one entry is counted as. */
  readonly per: number;
  readonly held: { readonly entries: number; readonly bytes: number };
  /** Whether the last inserted entry is still held, and the first. */
  readonly newest: boolean;
  readonly oldest: boolean;
}

export async function storeMemory(kind: StoreKind, bound: number, keyLength: number): Promise<StoreMemory> {
  const { stdout } = await promisify(execFile)(
    process.execPath,
    ['--expose-gc', '--import', 'tsx', script, kind, String(bound), String(keyLength)],
    { timeout: 120_000 },
  );
  return JSON.parse(stdout.trim()) as StoreMemory;
}

/**
 * What every byte-bounded store must show: the bytes it counts held within `bound`, the heap grown
 * by less than `bound + margin` (the margin covers the code's own allocations), the newest entry
 * kept and the oldest gone.
 */
export function expectHeldWithin(m: StoreMemory, bound: number, margin: number): void {
  expect(m.held.bytes).toBeLessThanOrEqual(bound);
  expect(m.after - m.before).toBeLessThan(bound + margin);
  expect(m.newest).toBe(true);
  expect(m.oldest).toBe(false);
}
