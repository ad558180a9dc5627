/**
 * withinBudget / withDeadline / settleBy: the deadline a decision hands down to its lookups.
 * Timings bound answers from above only, with a stated MARGIN of 1000 ms for a loaded machine.
 */
import { currentDeadline, settleBy, withDeadline, withinBudget } from '@mxguard/core';
import { describe, expect, it } from 'vitest';

const MARGIN = 1000;
const never = <T>() => new Promise<T>(() => {});

describe('withinBudget', () => {
  it('work that finishes in time: its value, not expired', async () => {
    const r = await withinBudget(
      1000,
      async () => 'done',
      () => 'late',
    );
    expect(r).toEqual({ value: 'done', expired: false, late: false });
  });

  it('work that watches the deadline finishes with what it has once the budget runs out', async () => {
    const started = performance.now();
    const r = await withinBudget(
      100,
      () => settleBy(never<string>(), currentDeadline(), () => 'what it had'),
      () => 'late',
    );
    expect(r).toEqual({ value: 'what it had', expired: true, late: false });
    expect(performance.now() - started).toBeLessThan(100 + MARGIN);
  });

  it('work that ignores the deadline is answered by late() after the grace', async () => {
    const started = performance.now();
    const r = await withinBudget(100, never<string>, () => 'late', { graceMs: 50 });
    expect(r).toEqual({ value: 'late', expired: true, late: true });
    expect(performance.now() - started).toBeLessThan(150 + MARGIN);
  });

  it('without the context (work with no lookups): the same budget, no deadline to read', async () => {
    const started = performance.now();
    const seen: unknown[] = [];
    const r = await withinBudget(
      100,
      async () => {
        seen.push(currentDeadline());
        return never<string>();
      },
      () => 'late',
      { graceMs: 50, context: false },
    );
    expect(seen).toEqual([undefined]);
    expect(r).toEqual({ value: 'late', expired: true, late: true });
    expect(performance.now() - started).toBeLessThan(150 + MARGIN);
    // In time, the value and not expired, as with the context.
    expect(
      await withinBudget(
        1000,
        async () => 'done',
        () => 'late',
        { context: false },
      ),
    ).toEqual({
      value: 'done',
      expired: false,
      late: false,
    });
  });

  it('a failure of the work is the caller’s to handle', async () => {
    await expect(
      withinBudget(
        1000,
        async () => {
          throw new Error('boom');
        },
        () => 'late',
      ),
    ).rejects.toThrow('boom');
  });

  it('a signal first asked for after the budget ran out is already aborted', async () => {
    // The signal is made only when a lookup asks for it: one asked for late must still be over.
    const r = await withinBudget(
      50,
      async () => {
        await new Promise((resolve) => setTimeout(resolve, 100));
        const signal = currentDeadline();
        return [signal?.aborted, (signal?.reason as Error | undefined)?.message];
      },
      (): unknown[] => ['late'],
      { graceMs: 5000 },
    );
    expect(r).toEqual({ value: [true, 'time budget of 50 ms exhausted'], expired: true, late: false });
  });

  it('inside another deadline, the earlier applies, and the outer aborts the inner', async () => {
    const outer = new AbortController();
    const r = await withDeadline(outer.signal, () =>
      withinBudget(
        60_000,
        async () => {
          const signal = currentDeadline();
          const before = signal?.aborted;
          outer.abort();
          return [before, signal?.aborted];
        },
        (): unknown[] => ['late'],
      ),
    );
    // The budget itself did not run out: the outer deadline did.
    expect(r).toEqual({ value: [false, true], expired: false, late: false });
  });

  it('work that throws at once is a rejection, not an exception', async () => {
    const p = withinBudget(
      1000,
      () => {
        throw new Error('at once');
      },
      () => 'late',
    );
    await expect(p).rejects.toThrow('at once');
  });

  it('refuses a budget that is not a positive number of milliseconds', async () => {
    for (const b of [0, -1, Number.NaN, Number.POSITIVE_INFINITY]) {
      await expect(
        withinBudget(
          b,
          async () => 1,
          () => 0,
        ),
      ).rejects.toThrow(TypeError);
    }
  });
});

describe('withDeadline', () => {
  it('the deadline travels with the async context, and is absent outside it', async () => {
    const c = new AbortController();
    expect(currentDeadline()).toBeUndefined();
    const seen = await withDeadline(c.signal, async () => {
      await Promise.resolve();
      await new Promise((r) => setImmediate(r));
      return currentDeadline();
    });
    expect(seen).toBe(c.signal);
    expect(currentDeadline()).toBeUndefined();
  });

  it('nested: the earlier deadline applies', async () => {
    const outer = new AbortController();
    const inner = new AbortController();
    const signal = withDeadline(outer.signal, () => withDeadline(inner.signal, () => currentDeadline()));
    expect(signal?.aborted).toBe(false);
    outer.abort();
    expect(signal?.aborted).toBe(true);
  });
});

describe('settleBy', () => {
  it('the promise when it settles first; the fallback when the signal aborts first', async () => {
    const c = new AbortController();
    expect(await settleBy(Promise.resolve(1), c.signal, () => 2)).toBe(1);
    const p = settleBy(never<number>(), c.signal, () => 2);
    c.abort();
    expect(await p).toBe(2);
    expect(await settleBy(never<number>(), AbortSignal.abort(), () => 3)).toBe(3);
    expect(await settleBy(Promise.resolve(4), undefined, () => 5)).toBe(4);
  });
});
