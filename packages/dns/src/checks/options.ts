/** Option readers shared by the DNS checks: config values are checked once, at construction. */
import type { HitAction } from '@mxguard/core';
import { HIT_ACTIONS } from '@mxguard/core';
import type { ListSpec } from '../listspec.js';
import { parseListSpecs } from '../listspec.js';

/** What a check does when a lookup fails temporarily. Never a 5xx. */
export type TempfailAction = 'defer_if_permit' | 'defer' | 'next';

export const TEMPFAIL_ACTIONS: readonly TempfailAction[] = ['defer_if_permit', 'defer', 'next'];

export function hitAction(check: string, key: string, v: unknown, fallback: HitAction): HitAction {
  if (v === undefined) return fallback;
  if (typeof v === 'string' && (HIT_ACTIONS as readonly string[]).includes(v)) return v as HitAction;
  throw new TypeError(`${check}: ${key} must be one of ${HIT_ACTIONS.join(', ')}; got ${JSON.stringify(v)}`);
}

export function hitActionOrOff(
  check: string,
  key: string,
  v: unknown,
  fallback: HitAction | 'off',
): HitAction | 'off' {
  if (v === 'off') return 'off';
  if (v === undefined) return fallback;
  return hitAction(check, key, v, 'reject');
}

export function tempfailAction(check: string, v: unknown, fallback: TempfailAction): TempfailAction {
  if (v === undefined) return fallback;
  if (typeof v === 'string' && (TEMPFAIL_ACTIONS as readonly string[]).includes(v))
    return v as TempfailAction;
  throw new TypeError(
    `${check}: tempfail must be one of ${TEMPFAIL_ACTIONS.join(', ')}; got ${JSON.stringify(v)}`,
  );
}

export function numberOption(check: string, key: string, v: unknown, fallback: number): number {
  if (v === undefined) return fallback;
  if (typeof v === 'number' && Number.isFinite(v)) return v;
  throw new TypeError(`${check}: ${key} must be a finite number; got ${JSON.stringify(v)}`);
}

/** Postfix's `*_reject_code` parameters: 450 (the default, a retry) or 550 (permanent). */
export function rejectCode(check: string, v: unknown, fallback: 450 | 550): 450 | 550 {
  if (v === undefined) return fallback;
  if (v === 450 || v === 550) return v;
  throw new TypeError(`${check}: rejectCode must be 450 or 550; got ${JSON.stringify(v)}`);
}

export function listsOption(
  check: string,
  v: unknown,
  fallback: readonly (string | ListSpec)[] | undefined,
): ListSpec[] {
  const raw = v ?? fallback ?? [];
  try {
    return parseListSpecs(raw as readonly (string | ListSpec)[], 'lists');
  } catch (err) {
    throw new TypeError(`${check}: ${err instanceof Error ? err.message : String(err)}`);
  }
}
