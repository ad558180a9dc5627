import type { Decision, Logger, Session } from '@mxguard/core';

/** One decision of the chain, as its observers see it. */
export interface DecisionEvent {
  /** The session as the chain judged it (stage, client, envelope). */
  readonly session: Session;
  /** What was decided, with its trace; in a dry run `would` holds what was not enforced. */
  readonly decision: Decision;
  /** When the decision was made (ms since the epoch, on the runtime's clock). */
  readonly at: number;
  /** How long the evaluation took, in seconds. */
  readonly seconds: number;
}

/** Told about each decision; must not throw (a throw is logged and the others are still told). */
export type DecisionObserver = (event: DecisionEvent) => void;

/**
 * The one place where every decision of `serve` and `policy` is observed: the metrics count them,
 * the status page keeps the latest. It outlives a reload (each new runtime tells the same hub), so
 * an observer subscribes once. Subscribers are few and fixed by the code, not by traffic.
 */
export class DecisionHub {
  readonly #observers = new Set<DecisionObserver>();
  readonly #log: Logger | undefined;

  constructor(log?: Logger) {
    this.#log = log;
  }

  /** Adds an observer; returns the function that removes it. */
  subscribe(observer: DecisionObserver): () => void {
    this.#observers.add(observer);
    return () => {
      this.#observers.delete(observer);
    };
  }

  /** Tells every observer about one decision. */
  emit(event: DecisionEvent): void {
    for (const o of this.#observers) {
      try {
        o(event);
      } catch (err) {
        this.#log?.error(
          { err: err instanceof Error ? err.message : String(err) },
          'a decision observer failed',
        );
      }
    }
  }
}
