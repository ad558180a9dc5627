/**
 * The per-session memo: what several checks derive from one session (the parsed client address,
 * a parsed envelope address, a classified PTR name) is computed once and shared by every check
 * that reads it, instead of once a check.
 *
 * Keyed by the session object (a WeakMap), so a memo lives as long as its session and no longer:
 * nothing to bound, nothing to evict. Each entry remembers the input it was computed from (the
 * string of the session's field), so a caller that reuses one session object with a changed field
 * gets a fresh value, never a stale one.
 */
import { type ParsedIp, parseClientIp } from './checks/names.js';
import type { Session } from './model.js';

/** A typed slot of the memo. Make one per derived value, at module level: `memoKey<T>('name')`. */
export interface MemoKey<T> {
  /** The slot's name, for debugging. */
  readonly name: string;
  /** Phantom: the type of the value the slot holds. */
  readonly _type?: T;
}

/** A new memo slot; `name` is for debugging only, two keys with one name are two slots. */
export function memoKey<T>(name: string): MemoKey<T> {
  return { name };
}

interface Entry {
  input: unknown;
  value: unknown;
}

const memos = new WeakMap<object, Map<MemoKey<unknown>, Entry>>();

/**
 * The value of `compute(input)` for this session, computed at most once for one input: the
 * second call with the same session, key and input returns the first call's value.
 */
export function memo<I, T>(session: Session, key: MemoKey<T>, input: I, compute: (input: I) => T): T {
  let slots = memos.get(session);
  if (slots === undefined) {
    slots = new Map();
    memos.set(session, slots);
  }
  const hit = slots.get(key as MemoKey<unknown>);
  if (hit !== undefined && hit.input === input) return hit.value as T;
  const value = compute(input);
  slots.set(key as MemoKey<unknown>, { input, value });
  return value;
}

const CLIENT_IP = memoKey<ParsedIp | null>('client-ip');

/**
 * The session's client address parsed by `parseClientIp` (IPv4-mapped IPv6 as IPv4), once a
 * session: `null` when it is not an IP address.
 */
export function clientIp(session: Session): ParsedIp | null {
  return memo(session, CLIENT_IP, session.clientAddress, parseClientIp);
}
