/**
 * The per-session memo: what several checks derive from one session (the parsed client address,
 * a parsed envelope address, a classified PTR name) is computed once and shared by every check
 * that reads it, instead of once a check.
 *
 * Kept for the last {@link MEMO_SESSIONS} session objects asked about, found by identity: the
 * checks of one evaluation ask about one session in a row, and evaluations that interleave (each
 * waiting on a lookup) are few at a time. A session pushed out is computed again if asked about
 * later: a value of the memo is pure, so that costs time, never a wrong answer. No WeakMap, whose
 * entries cost a hash insert a session and work for the collector. Each entry remembers the input
 * it was computed from (the string of the session's field), so a caller that reuses one session
 * object with a changed field gets a fresh value, never a stale one.
 */
import { type ParsedIp, parseClientIp } from './checks/names.js';
import type { Session } from './model.js';

/** A typed slot of the memo. Make one per derived value, at module level: `memoKey<T>('name')`. */
export interface MemoKey<T> {
  /** The slot's name, for debugging. */
  readonly name: string;
  /** The slot's place in a session's memo, given by {@link memoKey}. */
  readonly slot?: number;
  /** Phantom: the type of the value the slot holds. */
  readonly _type?: T;
}

/** A new memo slot; `name` is for debugging only, two keys with one name are two slots. */
export function memoKey<T>(name: string): MemoKey<T> {
  return { name, slot: slots++ };
}

let slots = 0;

interface Entry {
  input: unknown;
  value: unknown;
}

/** A session's memo: an entry a key, at the key's slot. */
type Slots = (Entry | undefined)[];

/** How many sessions the memo keeps values for (it holds these session objects until replaced). */
export const MEMO_SESSIONS = 16;

const ringSessions: (object | undefined)[] = new Array(MEMO_SESSIONS).fill(undefined);
const ringSlots: Slots[] = Array.from({ length: MEMO_SESSIONS }, () => []);
let ringNext = 0;
// The session asked about last and its memo, tested first.
let lastSession: object | undefined;
let lastSlots: Slots = [];

function slotsOf(session: object): Slots {
  for (let i = 0; i < MEMO_SESSIONS; i++) {
    if (ringSessions[i] === session) return ringSlots[i] as Slots;
  }
  const held: Slots = [];
  const at = ringNext;
  ringNext = (ringNext + 1) % MEMO_SESSIONS;
  ringSessions[at] = session;
  ringSlots[at] = held;
  return held;
}

/**
 * The value of `compute(input)` for this session, computed once for one input while the session is
 * among the last {@link MEMO_SESSIONS} asked about: the second call with the same session, key and
 * input returns the first call's value.
 */
export function memo<I, T>(session: Session, key: MemoKey<T>, input: I, compute: (input: I) => T): T {
  let held: Slots;
  if (session === lastSession) {
    held = lastSlots;
  } else {
    held = slotsOf(session);
    lastSession = session;
    lastSlots = held;
  }
  // A key made as an object literal rather than by memoKey has no slot: give it one now.
  const slot = key.slot ?? slotOf(key);
  const hit = held[slot];
  if (hit !== undefined && hit.input === input) return hit.value as T;
  const value = compute(input);
  held[slot] = { input, value };
  return value;
}

const extraSlots = new WeakMap<MemoKey<unknown>, number>();

function slotOf(key: MemoKey<unknown>): number {
  let slot = extraSlots.get(key);
  if (slot === undefined) {
    slot = slots++;
    extraSlots.set(key, slot);
  }
  return slot;
}

const CLIENT_IP = memoKey<ParsedIp | null>('client-ip');

/**
 * The session's client address parsed by `parseClientIp` (IPv4-mapped IPv6 as IPv4), once a
 * session: `null` when it is not an IP address.
 */
export function clientIp(session: Session): ParsedIp | null {
  return memo(session, CLIENT_IP, session.clientAddress, parseClientIp);
}
