import pg from 'pg';
import { PgBoss } from 'pg-boss';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { withTransaction } from '../src/db/index.ts';
import type { Engine } from '../src/engine/index.ts';
import { type SweepPass, sweepDeadLetters } from '../src/jobs/dead-letters.ts';
import type { Handler, JobData } from '../src/jobs/index.ts';
import { createLogger } from '../src/shared/logger.ts';
import {
  type AttemptRecord,
  attemptsOf,
  handlers as jobsHandlers,
  workflows as jobsWorkflows,
  openGate,
  STARTS_TABLE_SQL,
} from './fixtures/jobs-app.ts';
import { type JobsEngineProcess, spawnJobsEngine } from './fixtures/jobs-process.ts';
import { createTestContext, type TestContext, waitFor } from './helpers/context.ts';
import { entityRow } from './helpers/orders.ts';
import { refuseOutcomes } from './helpers/refuse-outcomes.ts';

interface StoredOutcome {
  type: string;
  data: Record<string, unknown> | null;
  metadata: { idempotencyKey?: string };
}

async function eventsOf(t: TestContext, entityId: string): Promise<StoredOutcome[]> {
  const { rows } = await t.pool.query<StoredOutcome>(
    "select type, data, metadata from events where machine = 'jobs' and entity_id = $1 order by version",
    [entityId],
  );
  return rows;
}

/** Waits until the entity has an event of `type`, and returns all of its events. */
function eventsOnceThere(t: TestContext, entityId: string, type: string, timeoutMs = 20_000) {
  return waitFor(
    `${entityId} to get ${type}`,
    async () => {
      const events = await eventsOf(t, entityId);
      return events.some((e) => e.type === type) ? events : undefined;
    },
    timeoutMs,
  );
}

const start = (t: TestContext, entityId: string, handler: string, data: unknown) =>
  t.publish(t.subject(`jobs.${entityId}.start`), { type: `${handler}.start`, data }, { id: entityId });

describe('handler jobs', () => {
  let t: TestContext;
  let engine: Engine;
  beforeAll(async () => {
    t = await createTestContext();
    engine = await t.startEngine({
      workflows: jobsWorkflows,
      handlers: jobsHandlers as unknown as Handler<never, unknown>[],
    });
  });
  afterAll(() => t.cleanup());

  /** The entity's job in `queue` (the documented `statehouse.<handler>`), once pg-boss has settled it. */
  const settledJob = (queue: string, entityId: string) =>
    waitFor(`the ${queue} job of ${entityId} to settle`, async () => {
      const [job] = await engine.jobs.boss.findJobs<JobData>(queue, { data: { entityId } });
      return job && (job.state === 'completed' || job.state === 'failed') ? job : undefined;
    });

  const deadLetters = (handler: string, entityId: string) =>
    engine.jobs.boss.findJobs<JobData>(`statehouse.${handler}.dead`, { data: { entityId } });

  /**
   * One pass of the dead-letter sweep over singleShot's dead letters, as the engine's own
   * makes them; tried again while the engine's pass holds the sweep's lock.
   */
  const sweepSingleShots = (pass: SweepPass, pool: pg.Pool = t.pool) =>
    waitFor('a sweep pass of this process', async () => {
      const result = await sweepDeadLetters(
        pool,
        'pgboss',
        ['statehouse.singleShot.dead'],
        engine.jobs.outcomes,
        createLogger('silent'),
        pass,
      );
      return result.elsewhere ? undefined : result;
    });

  /** The entity's dead letters of the handler, once there is one. */
  const deadLettersOnceThere = (handler: string, entityId: string, what = `the dead letter of ${entityId}`) =>
    waitFor(what, async () => {
      const letters = await deadLetters(handler, entityId);
      return letters.length > 0 ? letters : undefined;
    });

  const outcomesInContext = async (entityId: string) =>
    (await entityRow(t.pool, entityId, 'jobs'))?.snapshot?.context.outcomes as
      | Array<{ type: string }>
      | undefined;

  it('a handler that fails twice is retried with growing delays under one idempotency key, and its result reaches the machine once', async () => {
    await start(t, 'retry-1', 'flakyCharge', { failures: 2 });
    await eventsOnceThere(t, 'retry-1', 'flakyCharge.done');
    const job = await settledJob('statehouse.flakyCharge', 'retry-1');
    expect(job.state).toBe('completed');

    const tries = attemptsOf('retry-1');
    expect(tries.map((a) => a.attempt)).toEqual([1, 2, 3]);
    const key = tries[0]!.key;
    expect(key).toMatch(/^jobs:retry-1:1:/);
    expect(tries.every((a) => a.key === key)).toBe(true);

    // Each retry waits out its delay, and the second delay is longer than the first
    // (pg-boss waits delay·2^(n-1)·(1 + random) before retry n: 1–2 s, then 2–4 s).
    const [first, second, third] = tries.map((a) => a.startedAt) as [number, number, number];
    expect(first).toBeLessThan(second);
    expect(second).toBeLessThan(third);
    expect(second - first).toBeGreaterThanOrEqual(1000);
    expect(third - second).toBeGreaterThan(second - first);

    const events = await eventsOf(t, 'retry-1');
    expect(events.map((e) => e.type)).toEqual(['flakyCharge.start', 'flakyCharge.done']);
    expect(events[1]).toMatchObject({ data: { chargedOnTry: 3 }, metadata: { idempotencyKey: key } });
    await waitFor(
      'the machine to apply the outcome',
      async () => (await outcomesInContext('retry-1'))?.length,
    );
    expect(await outcomesInContext('retry-1')).toEqual([
      { type: 'flakyCharge.done', data: { chargedOnTry: 3 } },
    ]);
  });

  it('a handler that keeps failing gives the machine <handler>.failed with the error once its retries are used up, and its job lands in the dead-letter queue', async () => {
    await start(t, 'exhaust-1', 'brokenCharge', null);
    const events = await eventsOnceThere(t, 'exhaust-1', 'brokenCharge.failed');
    expect(events.map((e) => e.type)).toEqual(['brokenCharge.start', 'brokenCharge.failed']);
    expect(events[1]!.data).toMatchObject({ name: 'Error', message: 'payment gateway unreachable' });

    // retry.limit 2: the first try and two retries, all under one key.
    const tries = attemptsOf('exhaust-1');
    expect(tries.map((a) => a.attempt)).toEqual([1, 2, 3]);
    expect(new Set(tries.map((a) => a.key))).toEqual(new Set([events[1]!.metadata.idempotencyKey]));

    const job = await settledJob('statehouse.brokenCharge', 'exhaust-1');
    expect(job).toMatchObject({ state: 'failed', retryCount: 2 });
    const dead = await deadLettersOnceThere('brokenCharge', 'exhaust-1', 'the dead letter');
    expect(dead).toHaveLength(1);
    expect(dead[0]).toMatchObject({
      sourceName: 'statehouse.brokenCharge',
      sourceId: job.id,
      data: { key: tries[0]!.key, handler: 'brokenCharge' },
    });
    await waitFor(
      'the machine to apply the outcome',
      async () => (await outcomesInContext('exhaust-1'))?.length,
    );
    expect(await outcomesInContext('exhaust-1')).toEqual([
      {
        type: 'brokenCharge.failed',
        data: expect.objectContaining({ message: 'payment gateway unreachable' }),
      },
    ]);
  });

  it('a handler that throws NonRetryableError fails at once: one attempt, then <handler>.failed', async () => {
    await start(t, 'declined-1', 'declinedCharge', null);
    const events = await eventsOnceThere(t, 'declined-1', 'declinedCharge.failed');
    expect(events.map((e) => e.type)).toEqual(['declinedCharge.start', 'declinedCharge.failed']);
    expect(events[1]!.data).toMatchObject({ name: 'NonRetryableError', message: 'the card was declined' });
    // Settled for good with no retry used, although retry.limit is 3: no attempt can follow.
    const job = await settledJob('statehouse.declinedCharge', 'declined-1');
    expect(job).toMatchObject({ state: 'failed', retryCount: 0 });
    expect(attemptsOf('declined-1').map((a) => a.attempt)).toEqual([1]);
    expect(await deadLetters('declinedCharge', 'declined-1')).toHaveLength(1);
  });

  it('a hung handler is aborted through ctx.signal at its timeout and retried, and the retry’s result is recorded', async () => {
    await start(t, 'hung-1', 'stuckCall', null);
    const events = await eventsOnceThere(t, 'hung-1', 'stuckCall.done');
    const job = await settledJob('statehouse.stuckCall', 'hung-1');
    expect(job).toMatchObject({ state: 'completed', retryCount: 1 });

    const tries = attemptsOf('hung-1');
    expect(tries.map((a) => a.attempt)).toEqual([1, 2]);
    expect(tries[1]!.key).toBe(tries[0]!.key);
    const hung = tries[0]!.aborted as NonNullable<AttemptRecord['aborted']>;
    expect(hung, 'the hung attempt’s signal fired').toBeDefined();
    expect(hung.reason).toMatchObject({ code: 'HANDLER_TIMEOUT' });
    // timeoutSeconds: 1 (its timer starts a moment before the handler does), and the retry
    // only started after the abort.
    expect(hung.at - tries[0]!.startedAt).toBeGreaterThanOrEqual(950);
    expect(tries[1]!.startedAt).toBeGreaterThanOrEqual(hung.at);
    expect(tries[1]!.aborted).toBeUndefined();

    expect(events.map((e) => e.type)).toEqual(['stuckCall.start', 'stuckCall.done']);
    expect(events[1]).toMatchObject({
      data: { answeredOnTry: 2 },
      metadata: { idempotencyKey: tries[0]!.key },
    });
  });

  it('an output Postgres cannot store fails its own job at once, with the reason, instead of its batch', async () => {
    await start(t, 'nul-1', 'nulLabel', null);
    await start(t, 'nul-ok', 'flakyCharge', { failures: 0 });
    const events = await eventsOnceThere(t, 'nul-1', 'nulLabel.failed');
    expect(events[1]!.data).toMatchObject({ code: 'HANDLER_OUTPUT_INVALID' });
    expect(String(events[1]!.data?.message)).toMatch(/NUL character/);
    expect(attemptsOf('nul-1')).toHaveLength(1);
    await eventsOnceThere(t, 'nul-ok', 'flakyCharge.done');
  });

  it('an outcome already recorded for a job (its worker died before pg-boss settled it) is not recorded or applied again when the job finishes once more', async () => {
    await start(t, 'dup-1', 'gatedCall', null);
    await waitFor('the attempt to start', async () => attemptsOf('dup-1').length === 1 || undefined);
    const [job] = await engine.jobs.boss.findJobs<JobData>('statehouse.gatedCall', {
      data: { entityId: 'dup-1' },
    });
    expect(job?.state).toBe('active');
    // What a worker that recorded the outcome and then died leaves behind: the outcome
    // event stored, the pg-boss job still active (it would expire and run again).
    await withTransaction(
      t.pool,
      (client) =>
        engine.jobs.outcomes.record(client, [
          { jobId: job!.id, data: job!.data, ok: true, payload: { answeredBy: 'the worker that died' } },
        ]),
      { autocommit: true },
    );
    expect(openGate('dup-1', 'the attempt that ran again')).toBe(true);

    expect((await settledJob('statehouse.gatedCall', 'dup-1')).state).toBe('completed');
    await waitFor('the machine to apply the outcome', async () => (await outcomesInContext('dup-1'))?.length);
    const events = await eventsOf(t, 'dup-1');
    expect(events.map((e) => e.type)).toEqual(['gatedCall.start', 'gatedCall.done']);
    // The first outcome recorded wins; the entity's versions have no gap.
    expect(events[1]!.data).toEqual({ answeredBy: 'the worker that died' });
    expect(await entityRow(t.pool, 'dup-1', 'jobs')).toMatchObject({ last_version: 2, applied_version: 2 });
    expect(await outcomesInContext('dup-1')).toEqual([
      { type: 'gatedCall.done', data: { answeredBy: 'the worker that died' } },
    ]);
  });

  /**
   * An attempt of the entity's gatedCall job records `outcome` and its process dies before
   * pg-boss hears of it; pg-boss, not told, hands the job out again once it expires (here:
   * at once). Resolves with the job once pg-boss has settled it as `state`.
   */
  const recordThenHandOutAgain = async (
    entityId: string,
    outcome: { ok: boolean; payload: unknown },
    state: 'failed' | 'completed',
  ) => {
    await start(t, entityId, 'gatedCall', null);
    await waitFor('the attempt to start', async () => attemptsOf(entityId).length === 1 || undefined);
    const [job] = await engine.jobs.boss.findJobs<JobData>('statehouse.gatedCall', { data: { entityId } });
    await withTransaction(
      t.pool,
      (client) => engine.jobs.outcomes.record(client, [{ jobId: job!.id, data: job!.data, ...outcome }]),
      { autocommit: true },
    );
    await engine.jobs.boss.fail('statehouse.gatedCall', job!.id, new Error('worker lost'));
    // The first attempt's own late answer is a duplicate of the recorded outcome.
    expect(openGate(entityId, 'the attempt that lost its claim')).toBe(true);
    return waitFor(`the job to be ${state}`, async () => {
      const [found] = await engine.jobs.boss.findJobs<JobData>('statehouse.gatedCall', {
        data: { entityId },
      });
      return found?.state === state ? found : undefined;
    });
  };

  it('a job handed out again after its failure was recorded (its worker died before pg-boss settled it) is settled as recorded, not run again', async () => {
    // A failure for good, say a NonRetryableError.
    const settled = await recordThenHandOutAgain(
      'dup-2',
      { ok: false, payload: { message: 'card declined' } },
      'failed',
    );
    expect(settled.retryCount).toBe(1);
    expect(attemptsOf('dup-2').map((a) => a.attempt)).toEqual([1]);
    expect(await deadLetters('gatedCall', 'dup-2')).toHaveLength(1);
    const events = await eventsOf(t, 'dup-2');
    expect(events.map((e) => e.type)).toEqual(['gatedCall.start', 'gatedCall.failed']);
    expect(events[1]!.data).toEqual({ message: 'card declined' });
  });

  it('a job handed out again after its success was recorded is completed as recorded: the handler does not run again', async () => {
    const settled = await recordThenHandOutAgain(
      'dup-3',
      { ok: true, payload: { charged: 'earlier' } },
      'completed',
    );
    expect(settled.retryCount).toBe(1);
    expect(attemptsOf('dup-3').map((a) => a.attempt)).toEqual([1]);
    expect(await deadLetters('gatedCall', 'dup-3')).toHaveLength(0);
    const events = await eventsOf(t, 'dup-3');
    expect(events.map((e) => e.type)).toEqual(['gatedCall.start', 'gatedCall.done']);
    expect(events[1]!.data).toEqual({ charged: 'earlier' });
  });

  it('an outcome that cannot be recorded on the last attempt travels in the dead letter, and the sweep records it once Postgres takes it, one refused outcome not holding back another', async () => {
    // The other jobs of their batches are recorded one by one.
    const refused = await refuseOutcomes(t, 'singleShot.done', ['unrec-1', 'unrec-2']);
    try {
      for (const entityId of ['unrec-1', 'unrec-2']) {
        await start(t, entityId, 'singleShot', null);
        const [dead] = await deadLettersOnceThere('singleShot', entityId);
        const { rows } = await t.pool.query<{ output: unknown }>(
          'select source_output as output from pgboss.job where id = $1',
          [dead!.id],
        );
        expect(rows[0]!.output).toMatchObject({ unrecorded: 'done', output: { shotAt: 1 } });
        expect((await eventsOf(t, entityId)).map((e) => e.type)).toEqual(['singleShot.start']);
      }

      // unrec-2's outcome is still refused; unrec-1's is recorded all the same.
      await refused.allow('unrec-1');
      const events = await eventsOnceThere(t, 'unrec-1', 'singleShot.done');
      expect(events.map((e) => e.type)).toEqual(['singleShot.start', 'singleShot.done']);
      expect(events[1]!.data).toEqual({ shotAt: 1 });
      expect((await eventsOf(t, 'unrec-2')).map((e) => e.type)).toEqual(['singleShot.start']);

      // Its run succeeded: a redrive would only repeat it.
      const [letter] = await deadLetters('singleShot', 'unrec-2');
      await expect(engine.operations.redrive(letter!.id)).rejects.toThrow(
        /carries the output of a run that succeeded.*nothing to run again/,
      );
      await refused.allow('unrec-2');
      await eventsOnceThere(t, 'unrec-2', 'singleShot.done');
    } finally {
      await refused.remove();
    }
    // Recorded from the dead letters: each handler ran once.
    expect(attemptsOf('unrec-1').map((a) => a.attempt)).toEqual([1]);
    expect(attemptsOf('unrec-2').map((a) => a.attempt)).toEqual([1]);
    await waitFor(
      'the machine to apply the outcome',
      async () => (await outcomesInContext('unrec-1'))?.length,
    );
    expect(await outcomesInContext('unrec-1')).toEqual([{ type: 'singleShot.done', data: { shotAt: 1 } }]);
  });

  it('a job waiting to retry after a success that could not be recorded is not cancelled: the entity would hear of a failure', async () => {
    const refused = await refuseOutcomes(t, 'strictCharge.done', ['unrec-9']);
    try {
      await start(t, 'unrec-9', 'strictCharge', { amountCents: 700 });
      const [waiting] = await waitFor('the job to wait for its retry', async () => {
        const jobs = await engine.operations.list({ entityId: 'unrec-9', handler: 'strictCharge' });
        return jobs.some((j) => j.state === 'retry') ? jobs : undefined;
      });
      // Tried until the job is between attempts (it is briefly active on each retry).
      const refusal = await waitFor('cancel to be refused for the right reason', async () => {
        const error = await engine.operations.cancel(waiting!.id).then(
          () => new Error('cancelled'),
          (e: Error) => e,
        );
        return /only a job that has not started/.test(error.message) ? undefined : error;
      });
      expect(refusal.message).toMatch(/already did its work.*records it, so it is not cancelled/);
    } finally {
      await refused.remove();
    }
    const events = await eventsOnceThere(t, 'unrec-9', 'strictCharge.done');
    expect(events.map((e) => e.type)).toEqual(['strictCharge.start', 'strictCharge.done']);
  });

  it('the dead-letter sweep leaves alone a dead letter an operator holds (a redrive or retry in progress)', async () => {
    const refused = await refuseOutcomes(t, 'singleShot.done', ['held-1']);
    const operator = await t.pool.connect();
    try {
      await start(t, 'held-1', 'singleShot', null);
      const [dead] = await deadLettersOnceThere('singleShot', 'held-1', 'the dead letter');
      // Held before Postgres takes the outcome again, so no pass of the engine's own gets it first.
      await operator.query('begin');
      await operator.query('select 1 from pgboss.job where id = $1 for update', [dead!.id]);
      await refused.remove();
      const swept = await sweepSingleShots({ full: true });
      // Held back: the next pass must look again, whatever the operator's transaction does.
      expect(swept).toEqual({ settled: 0, complete: false, heldBack: true });
      expect((await eventsOf(t, 'held-1')).map((e) => e.type)).toEqual(['singleShot.start']);
    } finally {
      await operator.query('rollback').catch(() => {});
      operator.release();
      await refused.remove().catch(() => {});
    }
    // Let go, it is settled by the next pass (this process's own, every few seconds).
    await eventsOnceThere(t, 'held-1', 'singleShot.done');
  });

  it('a dead letter whose outcome Postgres refuses does not make every later pass of the sweep look at all dead letters', async () => {
    const refused = await refuseOutcomes(t, 'singleShot.done', ['refused-1']);
    try {
      await start(t, 'refused-1', 'singleShot', null);
      await deadLettersOnceThere('singleShot', 'refused-1', 'the dead letter');
      // Tried, refused, and the pass complete all the same: the next ones look only at recent
      // arrivals.
      expect(await sweepSingleShots({ full: true })).toEqual({ settled: 0, complete: true, heldBack: false });
      expect((await eventsOf(t, 'refused-1')).map((e) => e.type)).toEqual(['singleShot.start']);
    } finally {
      await refused.remove();
    }
    // Still recent: a later pass records it once Postgres takes it.
    await eventsOnceThere(t, 'refused-1', 'singleShot.done');
  });

  it('a pass through the dead letters goes on past those it cannot settle, a page at a time', async () => {
    const refused = await refuseOutcomes(t, 'singleShot.done', ['refused-2', 'refused-3']);
    try {
      const letters = [];
      for (const entityId of ['refused-2', 'refused-3']) {
        await start(t, entityId, 'singleShot', null);
        letters.push(...(await deadLettersOnceThere('singleShot', entityId, 'the dead letter')));
      }
      // A page of one: the second pass goes on after the first, not back to the start, even
      // from a session whose dates read differently (a time zone written as an abbreviation
      // two zones share, day before month).
      const first = await sweepSingleShots({ full: true, limit: 1 });
      expect(first).toMatchObject({ settled: 0, complete: false, heldBack: false });
      const otherDates = new pg.Pool({
        connectionString: t.databaseUrl,
        options: '-c search_path=statehouse -c datestyle=SQL,DMY -c timezone=Asia/Kolkata',
        max: 1,
      });
      const second = await sweepSingleShots({ full: true, limit: 1, after: first.next }, otherDates).finally(
        () => otherDates.end(),
      );
      expect(second.next?.id).not.toBe(first.next?.id);
      // The position it gives back is the dead letter's own time, to the microsecond.
      const { rows } = await t.pool.query<{ same: boolean }>(
        'select $1::timestamptz = created_on as same from pgboss.job where id = $2',
        [second.next?.createdOn, second.next?.id],
      );
      expect(rows[0]?.same).toBe(true);
      expect([first.next?.id, second.next?.id].sort()).toEqual(letters.map((l) => l.id).sort());
      expect(await sweepSingleShots({ full: true, limit: 1, after: second.next })).toEqual({
        settled: 0,
        complete: true,
        heldBack: false,
      });
    } finally {
      await refused.remove();
    }
  });

  it('the engine’s own sweep goes through more dead letters than one pass takes, past those it cannot settle, without waiting for its next pass', async () => {
    // 1,200 dead letters without an outcome, as workers that died on their last attempt
    // leave them: more than two pages of 500, the oldest 500 of them refused by Postgres.
    const refused = await refuseOutcomes(
      t,
      'singleShot.failed',
      Array.from({ length: 500 }, (_, i) => `lost-${i + 1}`),
    );
    try {
      await t.pool.query(
        `insert into pgboss.job (name, data, source_id, created_on)
         select 'statehouse.singleShot.dead',
                jsonb_build_object('machine', 'jobs', 'entityId', 'lost-' || g, 'handler', 'singleShot',
                                   'kind', 'run', 'input', null, 'key', 'lost-' || g,
                                   'causedBy', jsonb_build_object('position', 1, 'version', 1, 'type', 'singleShot.start')),
                gen_random_uuid(), now() - (1201 - g) * interval '1 millisecond'
         from generate_series(1, 1200) g`,
      );
      const recorded = async () =>
        (
          await t.pool.query<{ n: number; spread: number }>(
            `select count(*)::int as n,
                    coalesce(extract(epoch from max(recorded_at) - min(recorded_at)), 0)::float8 as spread
             from events where entity_id like 'lost-%' and type = 'singleShot.failed'`,
          )
        ).rows[0]!;
      // A walk that went back to its first page, or stopped after it, would record none.
      await waitFor('the outcomes Postgres takes', async () => (await recorded()).n === 700);
      // Passes come every 5 s (jobs.deadLetterSweepSeconds); the pages of one walk follow
      // each other at once.
      expect((await recorded()).spread).toBeLessThan(4);
      const { rows } = await t.pool.query<{ code: string }>(
        `select distinct data->>'code' as code from events where entity_id like 'lost-%'`,
      );
      expect(rows).toEqual([{ code: 'JOB_LOST' }]);
    } finally {
      await refused.remove();
    }
  });

  it('input that fails the handler’s schema fails the job without running the handler or retrying', async () => {
    await start(t, 'invalid-1', 'strictCharge', { amountCents: -5 });
    const events = await eventsOnceThere(t, 'invalid-1', 'strictCharge.failed');
    expect(events.map((e) => e.type)).toEqual(['strictCharge.start', 'strictCharge.failed']);
    expect(events[1]!.data?.message).toMatch(/input of handler "strictCharge" is invalid/);
    expect(events[1]!.data?.code).toBe('HANDLER_INPUT_INVALID');
    expect(events[1]!.data?.message).toContain('amountCents');
    const job = await settledJob('statehouse.strictCharge', 'invalid-1');
    expect(job).toMatchObject({ state: 'failed', retryCount: 0 });
    expect(attemptsOf('invalid-1')).toEqual([]);
  });
});

describe('job wake-ups', () => {
  let t: TestContext;
  beforeAll(async () => {
    // Polling so slow that only a wake-up can start a job within the test's time.
    t = await createTestContext({ jobs: { pollIntervalSeconds: 60 } });
    await t.startEngine({
      workflows: jobsWorkflows,
      handlers: jobsHandlers as unknown as Handler<never, unknown>[],
    });
  });
  afterAll(() => t.cleanup());

  it('a new job starts at once through the jobs channel, not at the next poll', async () => {
    // Let the workers settle into their first long poll.
    await new Promise((r) => setTimeout(r, 1500));
    const sent = Date.now();
    await start(t, 'wake-1', 'flakyCharge', { failures: 0 });
    await eventsOnceThere(t, 'wake-1', 'flakyCharge.done', 10_000);
    expect(Date.now() - sent).toBeLessThan(10_000);
    const [attempt] = attemptsOf('wake-1');
    expect(attempt!.startedAt - sent).toBeLessThan(5_000);
  });
});

describe('a worker process killed mid-job', () => {
  let t: TestContext;
  const engines: JobsEngineProcess[] = [];
  let maintenance: PgBoss | undefined;
  beforeAll(async () => {
    t = await createTestContext();
    await t.pool.query(STARTS_TABLE_SQL);
  });
  afterAll(async () => {
    await maintenance?.stop({ graceful: false });
    await Promise.all(engines.map((e) => e.stop()));
    await t.cleanup();
  });

  interface Start {
    key: string;
    attempt: number;
    pid: number;
  }
  /** A second pg-boss on the schema whose supervisor passes every second. */
  async function superviseEverySecond(): Promise<void> {
    if (maintenance) return;
    maintenance = new PgBoss({
      connectionString: t.databaseUrl,
      schema: t.config.jobs.schema,
      migrate: false,
      schedule: false,
      superviseIntervalSeconds: 1,
      monitorIntervalSeconds: 1,
    });
    maintenance.on('error', () => {});
    await maintenance.start();
  }

  const starts = async () =>
    (
      await t.pool.query<Start>(
        'select key, attempt, pid from public.jobs_starts order by started_at, attempt',
      )
    ).rows;

  it('a job whose worker is killed with kill -9 runs again in another process under the same idempotency key, and its outcome is recorded once', async () => {
    const first = await spawnJobsEngine(t);
    engines.push(first);
    await start(t, 'crash-1', 'slowShipment', { parcel: 'p-1' });
    const [started] = await waitFor('the first start', async () => {
      const rows = await starts();
      return rows.length > 0 ? rows : undefined;
    });
    expect(started).toMatchObject({ attempt: 1, pid: first.pid });
    await first.kill9();

    const second = await spawnJobsEngine(t);
    engines.push(second);
    // pg-boss hands a dead worker's job out again only once a supervisor pass finds it expired
    // (timeoutSeconds + 10 s after it started); the engines pass every 10 s
    // (jobs.superviseIntervalSeconds). A second pg-boss on the same schema that passes every
    // second takes that wait away, so this test waits only for the expiry.
    await superviseEverySecond();

    const events = await eventsOnceThere(t, 'crash-1', 'slowShipment.done', 60_000);
    const job = await waitFor('the job to complete', async () => {
      const [found] = await maintenance!.findJobs('statehouse.slowShipment', {
        data: { entityId: 'crash-1' },
      });
      return found?.state === 'completed' ? found : undefined;
    });
    expect(job.retryCount).toBe(1);
    const rows = await starts();
    expect(rows).toEqual([
      { key: started!.key, attempt: 1, pid: first.pid },
      { key: started!.key, attempt: 2, pid: second.pid },
    ]);
    expect(started!.key).toMatch(/^jobs:crash-1:1:/);
    expect(events.map((e) => e.type)).toEqual(['slowShipment.start', 'slowShipment.done']);
    expect(events[1]).toMatchObject({
      data: { parcel: 'p-1', shippedBy: second.pid },
      metadata: { idempotencyKey: started!.key },
    });
  }, 90_000);

  it('a job whose worker dies on its last attempt still ends with <handler>.failed, by the engines alone', async () => {
    // The only workers: the job must start, and die, in them. They expire it themselves,
    // passing every second (jobs.superviseIntervalSeconds), and sweep its dead letter.
    await Promise.all(engines.splice(0).map((e) => e.stop()));
    const everySecond = {
      STATEHOUSE_JOBS_SUPERVISE_SECONDS: '1',
      STATEHOUSE_JOBS_DEAD_LETTER_SWEEP_SECONDS: '1',
    };
    const worker = await spawnJobsEngine(t, everySecond);
    engines.push(worker);
    await start(t, 'crash-2', 'fragileShipment', { parcel: 'p-2' });
    await waitFor('the only start', async () =>
      (await starts()).some((s) => s.key.startsWith('jobs:crash-2:')),
    );
    await worker.kill9();
    engines.push(await spawnJobsEngine(t, everySecond));

    // Expired, out of retries, dead-lettered without an outcome: the sweep records one.
    const events = await eventsOnceThere(t, 'crash-2', 'fragileShipment.failed', 60_000);
    expect(events.map((e) => e.type)).toEqual(['fragileShipment.start', 'fragileShipment.failed']);
    expect(events[1]!.data).toMatchObject({ code: 'JOB_LOST' });
    const { rows: dead } = await t.pool.query(
      "select 1 from pgboss.job where name = 'statehouse.fragileShipment.dead' and data->>'entityId' = 'crash-2'",
    );
    expect(dead).toHaveLength(1);
    expect((await starts()).filter((s) => s.key.startsWith('jobs:crash-2:'))).toHaveLength(1);
  }, 90_000);
});
