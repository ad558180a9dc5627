import type { ClientRecord, GreylistDecision, GreylistPolicy, TripletRecord } from '../machine.js';

/** One decision asked of a store: the keys, the policy, and the time (never read from a clock inside). */
export interface DecideRequest {
  /** The triplet key (see `tripletKey`). */
  readonly triplet: string;
  /** The client address key for the auto-whitelist (see `clientAddressKey`). */
  readonly client: string;
  /** The timings to decide by (the check's). */
  readonly policy: GreylistPolicy;
}

/**
 * Where greylist state lives. `decide` runs the state machine (machine.ts) on the stored records
 * and writes the result back, atomically: two callers deciding the same triplet at once must see
 * one another's writes (one creates the record, the other finds it). A store that cannot answer
 * rejects the promise; the check maps that to its `onStoreError` outcome.
 */
export interface GreylistStore {
  /** A short name for logs (`memory`, `redis`). */
  readonly kind: string;
  /** Decides one triplet at `now` (ms) and stores the new records, atomically. */
  decide(request: DecideRequest, now: number): Promise<GreylistDecision>;
  /**
   * The same decision, at once, from a store that holds its records in this process (the memory
   * store); absent from one that must wait (Redis). The check then needs no promise and no trip
   * round the microtask queue (as `ReputationStore.scoreNow`). A failure throws.
   */
  decideNow?(request: DecideRequest, now: number): GreylistDecision;
  /** The stored records of a triplet and client, for tests and tools (`undefined` when absent). */
  inspect(
    triplet: string,
    client: string,
  ): Promise<{
    /** The triplet's record. */
    triplet?: TripletRecord;
    /** The client's auto-whitelist record. */
    client?: ClientRecord;
  }>;
  /** Saves what must survive (memory store with a file), stops timers, closes connections. */
  close(): Promise<void>;
}
