import { type CalloutRecord, consult, merge, pending, verifyTimes } from '@mxguard/callout';
import { describe, expect, it } from 'vitest';

// Postfix verify(8) semantics (src/verify/verify.c): PROBE_TTL 1000 s, positive expire 31d /
// refresh 7d, negative expire 3d / refresh 3h; a failed probe never clobbers a good entry.
const S = 1000;
const H = 3600 * S;
const D = 24 * H;
const t = verifyTimes();

describe('verify(8) cache policy', () => {
  it('has the Postfix defaults', () => {
    expect(t).toEqual({
      positiveExpireMs: 31 * D,
      positiveRefreshMs: 7 * D,
      negativeExpireMs: 3 * D,
      negativeRefreshMs: 3 * H,
      temporaryRefreshMs: 1000 * S,
      probeTtlMs: 1000 * S,
    });
  });

  it('an unknown address is todo and probed; then no second probe within 1000 s', () => {
    const now = 10 * D;
    const c = consult(undefined, now, t);
    expect(c).toMatchObject({ status: 'todo', probe: true });
    const p = pending(c.record, now, t);
    expect(consult(p, now + 999 * S, t)).toMatchObject({ status: 'todo', probe: false });
    // The probe is presumed lost after PROBE_TTL: a new one may go out.
    expect(consult(p, now + 1001 * S, t)).toMatchObject({ status: 'todo', probe: true });
    expect(p.expires).toBe(now + 1000 * S);
  });

  it('a good result is used for 31 days and refreshed after 7', () => {
    const r = merge(undefined, { status: 'exists', text: 'ok' }, 1, t);
    expect(r).toMatchObject({ status: 'exists', probed: 0, updated: 1, expires: 1 + 31 * D });
    const at = (ms: number) => consult(r, ms + 1, t);
    expect(at(7 * D - 1)).toMatchObject({ status: 'exists', probe: false });
    expect(at(7 * D + 1)).toMatchObject({ status: 'exists', probe: true });
    expect(at(31 * D + 1)).toMatchObject({ status: 'todo', probe: true });
  });

  it('a negative result is used for 3 days and refreshed after 3 hours', () => {
    const r: CalloutRecord = merge(undefined, { status: 'unknown-user', text: '550' }, 1, t);
    expect(consult(r, 1 + 3 * H, t)).toMatchObject({ status: 'unknown-user', probe: false });
    expect(consult(r, 2 + 3 * H, t)).toMatchObject({ status: 'unknown-user', probe: true });
    expect(consult(r, 2 + 3 * D, t)).toMatchObject({ status: 'todo' });
  });

  it('a temporary result is re-probed after 1000 s, not 3 h', () => {
    const r = merge(undefined, { status: 'temporary', text: 'timeout' }, 1, t);
    expect(consult(r, 1 + 1000 * S, t).probe).toBe(false);
    expect(consult(r, 2 + 1000 * S, t)).toMatchObject({ status: 'temporary', probe: true });
  });

  it('a failed probe never overwrites a good entry before it expires', () => {
    const good = merge(undefined, { status: 'exists', text: 'ok' }, 1, t);
    const refreshing = pending(good, 8 * D, t);
    for (const status of ['unknown-user', 'temporary', 'inconclusive'] as const) {
      expect(merge(refreshing, { status, text: 'x' }, 8 * D + 5 * S, t)).toBe(refreshing);
    }
    // A new good result replaces it and clears the pending probe.
    expect(merge(refreshing, { status: 'exists', text: 'ok2' }, 8 * D + 5 * S, t)).toMatchObject({
      status: 'exists',
      probed: 0,
      updated: 8 * D + 5 * S,
    });
    // Once the good entry expired, a failure is recorded.
    expect(merge(good, { status: 'unknown-user', text: 'x' }, 32 * D, t).status).toBe('unknown-user');
    // A negative entry is overwritten by a later failure or success alike.
    const bad = merge(undefined, { status: 'unknown-user', text: 'x' }, 1, t);
    expect(merge(bad, { status: 'temporary', text: 'y' }, 5 * H, t).status).toBe('temporary');
  });

  it('a pending marker keeps the old result answering', () => {
    const bad = merge(undefined, { status: 'unknown-user', text: 'x' }, 1, t);
    const p = pending(bad, 4 * H, t);
    expect(consult(p, 4 * H + 10 * S, t)).toMatchObject({ status: 'unknown-user', probe: false });
  });

  it('refuses nonsense times', () => {
    expect(() => verifyTimes({ positiveRefreshMs: 40 * D })).toThrow(TypeError);
    expect(() => verifyTimes({ probeTtlMs: 0 })).toThrow(TypeError);
  });
});
