/**
 * What the parser's values hold on to. A value kept after its request (a recipient in a transaction's
 * list, a key in a store) must hold its own characters only, never the text of the whole chunk it
 * came in: otherwise every kept recipient of 40 bytes would keep some 56 KB alive.
 */
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { describe, expect, it } from 'vitest';
import { RequestParser } from '../src/index.js';

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

function heap(): number {
  gc();
  gc();
  return process.memoryUsage().heapUsed;
}

/** One request of 14 long attributes and a recipient, as one chunk (56 KB). */
function chunk(i: number, letter: string): Buffer {
  let text = '';
  for (let k = 0; k < 14; k++) text += `pad${k}=${letter.repeat(4000)}\n`;
  text += `recipient=rcpt${i}-${'y'.repeat(20)}@example.com\n\n`;
  return Buffer.from(text, 'utf8');
}

describe('RequestParser memory', () => {
  for (const [what, letter] of [
    ['ASCII chunks (decoded whole)', 'x'],
    ['UTF-8 chunks (decoded line by line)', 'é'],
  ] as const) {
    it(`keeps no chunk alive through a kept value: ${what}`, () => {
      const chunks = Array.from({ length: 200 }, (_, i) => chunk(i, letter));
      const kept: string[] = [];
      const before = heap();
      const parser = new RequestParser({ maxLineLength: 8192 });
      for (const c of chunks) {
        parser.feed(c);
        const req = parser.take();
        kept.push(req?.get('recipient') ?? '');
      }
      const grown = heap() - before;
      expect(kept[199]).toBe(`rcpt199-${'y'.repeat(20)}@example.com`);
      // 200 values of 40 characters: a few tens of KB. Pinned chunk texts would be 200 x 56 KB.
      expect(grown).toBeLessThan(2 * 1024 * 1024);
    });
  }
});
