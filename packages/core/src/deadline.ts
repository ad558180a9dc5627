/**
 * A deadline for every answer (DESIGN principle 9). An adapter gives each decision (a policy
 * request, an SMTP command's reply, a Haraka hook) a time budget with {@link withinBudget}; the
 * decision's deadline travels with its asynchronous context (AsyncLocalStorage), so every DNS
 * lookup a check makes, however deep, learns it without each check passing it on. When the budget
 * runs out, the signal aborts: the resolver answers every lookup of that decision that has not
 * finished as a temporary failure (and never sends one still queued), so the checks finish with
 * what they have, under their own rule for a temporary failure (at most a 4xx).
 *
 * The deadline is wall-clock time, an I/O deadline like a socket timeout: it uses real timers, not
 * the injected clock that drives the state machines.
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import { setMaxListeners } from 'node:events';

/**
 * The deadline of one decision as its asynchronous context holds it. Its `AbortSignal` is made
 * only when something asks for it (a DNS lookup, through {@link currentDeadline}): a decision whose
 * checks are all offline never pays for an AbortController and its listeners.
 */
class Deadline {
  private made: AbortSignal | undefined;
  private controller: AbortController | undefined;
  private reason: Error | undefined;

  constructor(
    /** The deadline this one is nested in: the earlier of the two applies. */
    private readonly outer: Deadline | undefined,
    /** A signal given by the caller ({@link withDeadline}); none: this deadline aborts itself. */
    private readonly given: AbortSignal | undefined,
  ) {}

  /** True once the budget of this deadline itself ran out. */
  get expired(): boolean {
    return this.reason !== undefined;
  }

  /** Ends this deadline: its signal (now or when it is made) aborts with `reason`. */
  expire(reason: Error): void {
    this.reason = reason;
    this.controller?.abort(reason);
  }

  get signal(): AbortSignal {
    if (this.made) return this.made;
    let own = this.given;
    if (!own) {
      this.controller = new AbortController();
      if (this.reason) this.controller.abort(this.reason);
      own = this.controller.signal;
    }
    const both = this.outer ? AbortSignal.any([this.outer.signal, own]) : own;
    // Every lookup of the decision listens to it until it settles (and then stops): their number is
    // bounded by the decision's checks, not by a count Node should warn about.
    setMaxListeners(0, both);
    this.made = both;
    return both;
  }
}

const current = new AsyncLocalStorage<Deadline>();

/** The deadline of the decision being made here, as a signal that aborts when its budget runs out. */
export function currentDeadline(): AbortSignal | undefined {
  return current.getStore()?.signal;
}

/**
 * Runs `fn` with `signal` as the deadline of everything it starts. Inside another deadline, the
 * earlier of the two applies.
 */
export function withDeadline<T>(signal: AbortSignal, fn: () => T): T {
  return current.run(new Deadline(current.getStore(), signal), fn);
}

/**
 * `p`, or `fallback()` once `signal` has aborted, whichever comes first. `p` is not cancelled: a
 * lookup shared with another decision goes on for it. No signal: `p` itself.
 */
export function settleBy<T>(p: Promise<T>, signal: AbortSignal | undefined, fallback: () => T): Promise<T> {
  if (!signal) return p;
  if (signal.aborted) return Promise.resolve(fallback());
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => resolve(fallback());
    signal.addEventListener('abort', onAbort, { once: true });
    p.then(
      (v) => {
        signal.removeEventListener('abort', onAbort);
        resolve(v);
      },
      (err: unknown) => {
        signal.removeEventListener('abort', onAbort);
        reject(err);
      },
    );
  });
}

/** Options of {@link withinBudget}. */
export interface BudgetOptions {
  /**
   * Milliseconds after the budget that `work` may still take to finish with what it has (its
   * lookups are answered at once as temporary failures, so a DNS check needs microseconds); past
   * it `late()` answers. Covers what does not watch the deadline (a store that hangs).
   * @default 250
   */
  readonly graceMs?: number;
  /**
   * Whether `work` runs inside the deadline's asynchronous context (AsyncLocalStorage), so that
   * the DNS lookups it makes read the deadline ({@link currentDeadline}) and stop when it ends.
   * `false` for work that makes no lookup (an offline chain): nothing would read it, and a process
   * that never enters an AsyncLocalStorage context spares every promise Node 20's hook, about
   * 5 µs a request in the policy server (docs/DECISIONS.md). The budget is kept either way: the
   * deadline still expires and `late()` still answers on time.
   * @default true
   */
  readonly context?: boolean;
}

/** The answer of {@link withinBudget}. */
export interface Budgeted<T> {
  /** What `work` returned, or what `late()` gave when it did not finish in time. */
  readonly value: T;
  /** True when the budget ran out before `work` finished (some lookups were cut short). */
  readonly expired: boolean;
  /** True when `work` did not finish within budget plus grace and `late()` answered instead. */
  readonly late: boolean;
}

/** The default grace of {@link withinBudget}, in milliseconds. */
export const DEADLINE_GRACE_MS = 250;

/**
 * Runs `work` with a deadline `budgetMs` from now (see {@link withDeadline}). At the budget the
 * deadline's signal aborts; if `work` has still not finished `graceMs` later, `late()` answers
 * (and `work`'s eventual result is dropped). So the answer comes within `budgetMs + graceMs`, plus
 * whatever the event loop is late by.
 */
export function withinBudget<T>(
  budgetMs: number,
  work: () => Promise<T>,
  late: () => T,
  options: BudgetOptions = {},
): Promise<Budgeted<T>> {
  if (!Number.isFinite(budgetMs) || budgetMs <= 0)
    return Promise.reject(new TypeError(`time budget must be a number of milliseconds > 0, got ${budgetMs}`));
  const graceMs = options.graceMs ?? DEADLINE_GRACE_MS;
  // One timer a decision, and no AbortController unless a lookup asks for the signal (Deadline).
  const deadline = new Deadline(current.getStore(), undefined);
  return new Promise<Budgeted<T>>((resolve, reject) => {
    let settled = false;
    let graceTimer: NodeJS.Timeout | undefined;
    const budgetTimer = setTimeout(() => {
      deadline.expire(new Error(`time budget of ${budgetMs} ms exhausted`));
      graceTimer = setTimeout(() => {
        if (settled) return;
        settled = true;
        try {
          resolve({ value: late(), expired: true, late: true });
        } catch (err) {
          reject(err);
        }
      }, graceMs);
    }, budgetMs);
    const end = () => {
      settled = true;
      clearTimeout(budgetTimer);
      clearTimeout(graceTimer);
    };
    let done: Promise<T>;
    try {
      done = Promise.resolve(options.context === false ? work() : current.run(deadline, work));
    } catch (err) {
      done = Promise.reject(err);
    }
    // work's own result or failure after late() answered is dropped (never an unhandled rejection).
    done.then(
      (value) => {
        if (settled) return;
        end();
        resolve({ value, expired: deadline.expired, late: false });
      },
      (err: unknown) => {
        if (settled) return;
        end();
        reject(err);
      },
    );
  });
}
