import {
  type Check,
  chain,
  type Decision,
  decisionRecord,
  defer,
  dryRun,
  next,
  reject,
  reply,
  type Session,
  type Stage,
  saidSteps,
  stepSaid,
  type TraceStep,
  type Verdict,
} from '@mxguard/core';
import { describe, expect, it } from 'vitest';

const r554 = reply(554, '5.7.1', 'Access denied');
const r450 = reply(450, '4.7.1', 'Try later');

const check = (name: string, stage: Stage, verdict: Verdict): Check => ({ name, stage, run: () => verdict });

const session: Session = {
  clientAddress: '192.0.2.1',
  helo: 'mail.example.net',
  mailFrom: 'a@example.net',
  rcptTo: 'b@example.com',
  stage: 'rcpt',
};

/** Twenty links that have no opinion, as most of the recommended preset's on an ordinary client. */
const quiet = (n: number, prefix = 'quiet'): Check[] =>
  Array.from({ length: n }, (_, i) => check(`${prefix}-${i}`, 'rcpt', next('nothing to say')));

const names = (rec: Record<string, unknown>) => (rec.trace as TraceStep[]).map((s) => s.check);

describe('decisionRecord: the trace of the log line', () => {
  it('by default carries only the steps that said something, and `steps` counts every link', async () => {
    const d = await chain([
      ...quiet(10, 'a'),
      check('doubter', 'rcpt', next('no PTR', [{ check: 'doubter', tag: 'no-ptr', doubt: true }])),
      ...quiet(10, 'b'),
      check('denier', 'rcpt', reject(r554, 'listed')),
      ...quiet(3, 'c'),
    ]).evaluate(session);
    expect(d.trace).toHaveLength(22);
    const rec = decisionRecord(session, d, 'q1');
    expect(rec.steps).toBe(22);
    expect(names(rec)).toEqual(['doubter', 'denier']);
    expect(rec.trace).toEqual([d.trace[10], d.trace[21]]);
    // The deciding step keeps its code and reason.
    expect((rec.trace as TraceStep[])[1]).toMatchObject({ action: 'reject', code: 554, reason: 'listed' });
    // The old call shape is the same as `said`.
    expect(decisionRecord(session, d, 'q1', { trace: 'said' })).toEqual(rec);
  });

  it("`{ trace: 'full' }` carries every step, `next` ones included", async () => {
    const d = await chain([...quiet(5), check('denier', 'rcpt', reject(r554, 'listed'))]).evaluate(session);
    const rec = decisionRecord(session, d, 7, { trace: 'full' });
    expect(rec.trace).toBe(d.trace);
    expect(rec.steps).toBe(6);
    expect(names(rec)).toEqual(['quiet-0', 'quiet-1', 'quiet-2', 'quiet-3', 'quiet-4', 'denier']);
    expect(rec.session).toBe('7');
  });

  it('keeps a step in warn mode and a step that failed, in order', async () => {
    const boom: Check = {
      name: 'boom',
      stage: 'rcpt',
      run() {
        throw new Error('store down');
      },
    };
    const d = await chain(
      [
        ...quiet(2, 'a'),
        { check: check('warned', 'rcpt', reject(r554, 'would refuse')), mode: 'warn' },
        ...quiet(2, 'b'),
        boom,
        ...quiet(2, 'c'),
      ],
      { onError: 'next' },
    ).evaluate(session);
    const rec = decisionRecord(session, d);
    expect(rec.action).toBe('next');
    expect(rec.steps).toBe(d.trace.length);
    expect(names(rec)).toEqual(['warned', 'boom']);
    expect(rec.trace).toMatchObject([
      { check: 'warned', action: 'reject', warn: true },
      { check: 'boom', action: 'error', reason: 'store down' },
    ]);
  });

  it('a decision nobody had an opinion on carries an empty trace and the count', async () => {
    const d = await chain(quiet(25)).evaluate(session);
    const rec = decisionRecord(session, d);
    expect(rec).toMatchObject({ action: 'next', steps: 25, trace: [] });
    expect(JSON.stringify(rec).length).toBeLessThan(
      JSON.stringify(decisionRecord(session, d, undefined, { trace: 'full' })).length / 4,
    );
  });

  it("a dry run's would-be decider is kept, with `would` beside `action: next`", async () => {
    const d = await dryRun(
      chain([...quiet(4), check('greylist', 'rcpt', defer(r450, 'new triplet', true))]),
    ).evaluate(session);
    const rec = decisionRecord(session, d);
    expect(rec).toMatchObject({ action: 'next', would: 'defer', check: 'greylist', steps: 5 });
    expect(names(rec)).toEqual(['greylist']);
  });

  it("a decision with no trace (an adapter's own refusal) has steps 0", () => {
    const d: Decision = {
      action: 'defer',
      reply: r450,
      check: 'connection-limit',
      reason: 'x',
      trace: [],
      findings: [],
    };
    expect(decisionRecord(session, d, 'c1')).toMatchObject({ steps: 0, trace: [] });
  });
});

describe('stepSaid and saidSteps', () => {
  const step = (s: Partial<TraceStep>): TraceStep => ({ check: 'x', action: 'next', ms: 0, ...s });

  it('a next or skip step without findings or warn says nothing; anything else does', () => {
    expect(stepSaid(step({}))).toBe(false);
    expect(stepSaid(step({ reason: 'skipped: offline (no DNS)' }))).toBe(false);
    expect(stepSaid(step({ action: 'skip' }))).toBe(false);
    expect(stepSaid(step({ findings: [] }))).toBe(false);
    expect(stepSaid(step({ findings: [{ check: 'x', tag: 'dynamic', score: 2 }] }))).toBe(true);
    expect(stepSaid(step({ warn: true }))).toBe(true);
    expect(stepSaid(step({ action: 'error', reason: 'boom' }))).toBe(true);
    expect(stepSaid(step({ action: 'accept' }))).toBe(true);
    expect(stepSaid(step({ action: 'defer', code: 450 }))).toBe(true);
    expect(stepSaid(step({ action: 'reject', code: 550 }))).toBe(true);
  });

  it('keeps the order, and returns the trace itself when every step said something', () => {
    const said = [step({ check: 'a', action: 'error' }), step({ check: 'b', warn: true })];
    expect(saidSteps(said)).toBe(said);
    const mixed = [step({ check: 'q' }), said[0] as TraceStep, step({ check: 'r' }), said[1] as TraceStep];
    expect(saidSteps(mixed)).toEqual(said);
    expect(saidSteps([])).toEqual([]);
  });
});
