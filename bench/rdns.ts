/**
 * rDNS classifier throughput: classifications per second over the labelled list
 * (packages/core/test/fixtures/rdns-labelled.tsv), plus a hostile case (10 kB names).
 * Run: npx tsx bench/rdns.ts
 */
import { readFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { classifyPtr } from '../packages/core/src/rdns/index.js';

const rows = readFileSync(
  new URL('../packages/core/test/fixtures/rdns-labelled.tsv', import.meta.url),
  'utf8',
)
  .split('\n')
  .filter((l) => l.length > 0 && !l.startsWith('#'))
  .map((l) => l.split('\t') as [string, string]);

function run(label: string, inputs: readonly (readonly [string, string])[], rounds: number): void {
  let sink = 0;
  for (let i = 0; i < 3; i++) for (const [ip, name] of inputs) sink += classifyPtr(ip, name).evidence.length; // warm-up
  const started = performance.now();
  for (let r = 0; r < rounds; r++)
    for (const [ip, name] of inputs) sink += classifyPtr(ip, name).evidence.length;
  const ms = performance.now() - started;
  const n = rounds * inputs.length;
  console.log(
    `${label}: ${n} classifications in ${ms.toFixed(0)} ms = ${Math.round((n / ms) * 1000).toLocaleString('en')} /s (${((ms * 1000) / n).toFixed(2)} µs each; sink ${sink})`,
  );
}

console.log(`node ${process.version}, ${cpus()[0]?.model ?? 'unknown CPU'}`);
run(`labelled list (${rows.length} rows)`, rows, 200);
const hostile: [string, string][] = [
  ['1.2.3.4', 'x'.repeat(10_000)],
  ['1.2.3.4', `${'a-1-2-3-4.'.repeat(1000)}example.com`],
  ['1.2.3.4', `${'1.'.repeat(110)}1.dyn.example.net`],
];
run('hostile names (10 kB, 237-char all-digit name)', hostile, 20_000);
