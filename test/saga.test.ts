import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { withTransaction } from '../src/db/index.ts';
import type { Engine } from '../src/engine/index.ts';
import { listEntities } from '../src/entities/index.ts';
import type { Handler, JobData } from '../src/jobs/index.ts';
import type { JobOutcome } from '../src/jobs/outcomes.ts';
import { appendEvents } from '../src/store/index.ts';
import { bookSeat, controls, handlers, payTrip, undone, workflows } from './fixtures/saga-app.ts';
import { createTestContext, type TestContext, waitFor } from './helpers/context.ts';
import { entityRow, eventTypes } from './helpers/orders.ts';
import { refuseOutcomes } from './helpers/refuse-outcomes.ts';

/** Engine-driven compensation (`compensateCompleted()`) and the job operations, on real servers. */
describe('saga compensation and job operations', () => {
  let t: TestContext;
  let engine: Engine;
  beforeAll(async () => {
    t = await createTestContext();
    engine = await t.startEngine({
      workflows,
      handlers: handlers as unknown as Handler<never, unknown>[],
    });
  });
  afterAll(() => t.cleanup());

  const request = (tripId: string, type = 'trip.requested') =>
    t.publish(t.subject(`trips.${tripId}.${type.split('.')[0]}`), { type, data: null });
  const trip = (tripId: string) => entityRow(t.pool, tripId, 'trip');
  const history = (tripId: string) => eventTypes(t.pool, tripId, 'trip');
  const reaches = (tripId: string, state: string, timeoutMs = 20_000) =>
    waitFor(
      `trip ${tripId} to reach ${state}`,
      async () => {
        const row = await trip(tripId);
        return row?.state === state ? row : undefined;
      },
      timeoutMs,
    );

  it('undoes the completed steps in reverse order, each once, when a later step fails for good', async () => {
    controls.paymentFails.add('t-1');
    await request('t-1');
    const row = await reaches('t-1', 'cancelled');
    expect(row.status).toBe('done');
    expect(undone.filter((u) => u.endsWith(':t-1'))).toEqual([
      'bookCar:t-1',
      'bookHotel:t-1',
      'bookFlight:t-1',
    ]);
    expect(await history('t-1')).toEqual([
      'trip.requested',
      'bookFlight.done',
      'bookHotel.done',
      'bookCar.done',
      'payTrip.failed',
      'bookCar.compensated',
      'bookHotel.compensated',
      'bookFlight.compensated',
      'saga.compensated',
    ]);
  });

  it('an undo outcome the saga is not waiting for (a stale job’s, a late sweep’s) is kept in the history and moves nothing', async () => {
    const [undo] = await engine.jobs.boss.findJobs<JobData>('statehouse.bookCar.compensate', {
      data: { entityId: 't-1' },
    });
    expect(undo?.state).toBe('completed');
    await withTransaction(
      t.pool,
      (client) =>
        engine.jobs.outcomes.record(client, [
          { jobId: randomUUID(), data: undo!.data, ok: false, payload: { message: 'a late failure' } },
        ]),
      { autocommit: true },
    );
    expect((await history('t-1')).slice(-2)).toEqual(['saga.compensated', 'bookCar.compensationFailed']);
    const { rows: steps } = await t.pool.query<{ status: string }>(
      "select status from saga_steps where entity_id = 't-1'",
    );
    expect(steps.map((s) => s.status)).toEqual(['compensated', 'compensated', 'compensated']);
    // Once the machine has seen the stale outcome too, not before.
    const applied = await waitFor('the stale outcome to be applied', async () => {
      const row = await trip('t-1');
      return row && row.applied_version === row.last_version ? row : undefined;
    });
    expect(applied).toMatchObject({ status: 'done', state: 'cancelled' });
    const { rows } = await t.pool.query("select saga_state from entities where entity_id = 't-1'");
    expect(rows[0]).toEqual({ saga_state: null });
  });

  it('a compensable step that completes after its saga was compensated is undone then, not left in place', async () => {
    controls.paymentFails.add('t-9');
    await request('t-9', 'rush.requested');
    // The payment failed for good while the seat was still being booked: nothing to undo yet.
    await reaches('t-9', 'cancelled');
    expect(await history('t-9')).toContain('saga.compensated');
    const answer = await waitFor('the seat booking to be running', async () =>
      controls.seatAnswers.get('t-9'),
    );
    answer();

    await waitFor('the late seat to be undone', async () => undone.includes('bookSeat:t-9') || undefined);
    const events = await waitFor('the undo of the seat', async () => {
      const types = await history('t-9');
      return types.includes('bookSeat.compensated') ? types : undefined;
    });
    // The machine had its saga.compensated; the late undo ends without another.
    expect(events.slice(-2)).toEqual(['bookSeat.done', 'bookSeat.compensated']);
    expect(events.filter((type) => type === 'saga.compensated')).toHaveLength(1);
    expect(undone.filter((u) => u === 'bookSeat:t-9')).toHaveLength(1);
    const { rows } = await t.pool.query("select saga_state, status from entities where entity_id = 't-9'");
    expect(rows[0]).toEqual({ saga_state: null, status: 'done' });
  });

  it('a late step of a compensated attempt is undone without touching the steps of the attempt after it', async () => {
    controls.paymentFails.add('t-11');
    await request('t-11', 'retry.requested');
    // First attempt: the payment failed for good while the seat was being booked; nothing to
    // undo yet. Second attempt: a car, booked and kept.
    await reaches('t-11', 'booked');
    expect(await history('t-11')).toEqual(
      expect.arrayContaining(['payTrip.failed', 'saga.compensated', 'bookCar.done']),
    );
    const answer = await waitFor('the seat booking to be running', async () =>
      controls.seatAnswers.get('t-11'),
    );
    answer();

    await waitFor('the late seat to be undone', async () => undone.includes('bookSeat:t-11') || undefined);
    await waitFor(
      'the undo of the seat',
      async () => (await history('t-11')).includes('bookSeat.compensated') || undefined,
    );
    const { rows } = await t.pool.query<{ handler: string; status: string }>(
      "select handler, status from saga_steps where entity_id = 't-11' order by seq",
    );
    expect(rows).toEqual([
      { handler: 'bookCar', status: 'done' },
      { handler: 'bookSeat', status: 'compensated' },
    ]);
    expect(undone).not.toContain('bookCar:t-11');
    expect((await history('t-11')).filter((type) => type === 'saga.compensated')).toHaveLength(1);
    const { rows: entity } = await t.pool.query(
      "select saga_state, saga_before_version, status from entities where entity_id = 't-11'",
    );
    expect(entity[0]).toEqual({ saga_state: null, saga_before_version: null, status: 'done' });
  });

  it('an undo whose outcome Postgres refused on its last attempt is settled by the dead-letter sweep, and the saga carries on', async () => {
    controls.paymentFails.add('t-12');
    const refused = await refuseOutcomes(t, 'bookHotel.compensated', ['t-12']);
    try {
      await request('t-12');
      await waitFor('the hotel undo to be dead-lettered', async () => {
        const dead = await engine.operations.list({ entityId: 't-12', handler: 'bookHotel', state: 'dead' });
        return dead.length > 0 || undefined;
      });
      // The saga waits for that undo: the flight is not undone yet.
      expect(undone).not.toContain('bookFlight:t-12');
    } finally {
      await refused.remove();
    }
    const row = await reaches('t-12', 'cancelled');
    expect(row.status).toBe('done');
    expect((await history('t-12')).slice(-4)).toEqual([
      'bookCar.compensated',
      'bookHotel.compensated',
      'bookFlight.compensated',
      'saga.compensated',
    ]);
    expect(undone.filter((u) => u.endsWith(':t-12')).at(-1)).toBe('bookFlight:t-12');
  });

  it('a restart for a late step widens when a late step of a later saga arrives, and undoes both', async () => {
    // The history two attempts leave when each one's saga ended while a step was still
    // running: the seat planned at 1, its saga ended at 2; the car planned at 3, its saga
    // ended at 4.
    const left: Array<[string, 'nats' | 'engine']> = [
      ['seat.requested', 'nats'],
      ['saga.compensated', 'engine'],
      ['car.requested', 'nats'],
      ['saga.compensated', 'engine'],
    ];
    await withTransaction(t.pool, (client) =>
      appendEvents(
        client,
        left.map(([type, source], i) => ({
          machine: 'trip',
          entityId: 'w-1',
          type,
          data: null,
          messageId: `w-1:${i}`,
          source,
        })),
      ),
    );
    const late = (handler: string, version: number, tripId: string): JobOutcome => ({
      jobId: randomUUID(),
      ok: true,
      payload: { confirmation: `${handler}-late` },
      data: {
        machine: 'trip',
        entityId: 'w-1',
        handler,
        kind: 'run',
        compensable: true,
        input: { tripId },
        key: `trip:w-1:${version}:0`,
        causedBy: { position: 0, version, type: 'late' },
      },
    });
    // Both complete in one batch. The seat starts a restart bounded by the first saga's
    // end; the car, recorded next while that restart runs, widens it to the second's.
    await withTransaction(t.pool, (client) =>
      engine.jobs.outcomes.record(client, [late('bookSeat', 1, 'w-1-seat'), late('bookCar', 3, 'w-1-car')]),
    );

    await waitFor('both late steps to be undone', async () =>
      undone.includes('bookSeat:w-1-seat') && undone.includes('bookCar:w-1-car') ? true : undefined,
    );
    await waitFor('the restart to end', async () => {
      const { rows } = await t.pool.query("select saga_state from entities where entity_id = 'w-1'");
      return rows[0]?.saga_state === null || undefined;
    });
    // Both sagas had told the machine their end; the restart adds none.
    expect((await history('w-1')).filter((type) => type === 'saga.compensated')).toHaveLength(2);
  });

  it('will not rerun a step of an entity that is done unless forced: its machine would ignore the outcome', async () => {
    const [payment] = await engine.operations.list({ entityId: 't-1', handler: 'payTrip', state: 'failed' });
    await expect(engine.operations.retry(payment!.id)).rejects.toThrow(
      /trip t-1 is done \(state "cancelled"\).*pass --force/,
    );
    const [deadLetter] = await engine.operations.list({ entityId: 't-1', handler: 'payTrip', state: 'dead' });
    await expect(engine.operations.redrive(deadLetter!.id)).rejects.toThrow(/is done/);
    expect(await history('t-1')).not.toContain('statehouse.job.retried');
  });

  it('a compensation that fails for good leaves the entity needs-attention; an operator retry finishes the saga', async () => {
    controls.paymentFails.add('t-2');
    controls.hotelRefundBlocked.add('t-2');
    await request('t-2');
    await reaches('t-2', 'stuck');
    // The machine's state has no tag for it: the engine marks the entity itself.
    const stuck = await waitFor('t-2 to need attention', async () => {
      const row = await trip('t-2');
      return row?.status === 'needs-attention' ? row : undefined;
    });
    expect(stuck.state).toBe('stuck');
    expect((await listEntities(t.pool, { status: 'needs-attention' })).map((e) => e.entityId)).toContain(
      't-2',
    );
    // Stopped at the failed undo: the flight, booked before the hotel, is not undone yet.
    expect(undone.filter((u) => u.endsWith(':t-2'))).toEqual(['bookCar:t-2']);
    const types = await history('t-2');
    expect(types.slice(-3)).toEqual([
      'bookCar.compensated',
      'bookHotel.compensationFailed',
      'saga.compensationFailed',
    ]);

    // pg-boss marks the job failed just after the transaction that recorded its failure.
    const [failed] = await waitFor('the failed compensation job', async () => {
      const list = await engine.operations.list({ entityId: 't-2', kind: 'compensate', state: 'failed' });
      return list.length > 0 ? list : undefined;
    });
    expect(failed).toMatchObject({ handler: 'bookHotel', kind: 'compensate', deadLetter: false });
    const [deadLetter] = await engine.operations.list({
      entityId: 't-2',
      handler: 'bookHotel',
      state: 'dead',
    });
    expect(deadLetter?.sourceId).toBe(failed!.id);

    controls.hotelRefundBlocked.delete('t-2');
    const retried = await engine.operations.retry(failed!.id, { reason: 'cancelled the hotel by phone' });
    expect(retried.newJobId).toBeDefined();
    const done = await reaches('t-2', 'cancelled');
    expect(done.status).toBe('done');
    expect(undone.filter((u) => u.endsWith(':t-2'))).toEqual([
      'bookCar:t-2',
      'bookHotel:t-2',
      'bookFlight:t-2',
    ]);
    expect((await history('t-2')).slice(types.length)).toEqual([
      'statehouse.job.retried',
      'bookHotel.compensated',
      'bookFlight.compensated',
      'saga.compensated',
    ]);
    // The retry took the job's dead letter with it: nothing is left to redrive twice.
    expect(await engine.operations.list({ entityId: 't-2', handler: 'bookHotel', state: 'dead' })).toEqual(
      [],
    );
    const { rows } = await t.pool.query<{ data: Record<string, unknown> }>(
      "select data from events where entity_id = 't-2' and type = 'statehouse.job.retried'",
    );
    expect(rows[0]?.data).toMatchObject({
      jobId: failed!.id,
      newJobId: retried.newJobId,
      handler: 'bookHotel',
      reason: 'cancelled the hotel by phone',
    });
  });

  it('redrives a dead letter: the job runs again under its idempotency key and its outcome reaches the entity', async () => {
    controls.invoiceBlocked.add('t-3');
    await request('t-3', 'invoice.requested');
    await waitFor('the invoice to fail for good', async () =>
      (await history('t-3')).includes('sendInvoice.failed'),
    );
    const [deadLetter] = await waitFor('its dead letter', async () => {
      const list = await engine.operations.list({ entityId: 't-3', state: 'dead' });
      return list.length > 0 ? list : undefined;
    });
    await expect(engine.operations.retry(deadLetter!.id)).rejects.toThrow(/dead letter; redrive it/);

    controls.invoiceBlocked.delete('t-3');
    const redriven = await engine.operations.redrive(deadLetter!.id);
    await waitFor('the redriven invoice to be sent', async () =>
      (await history('t-3')).includes('sendInvoice.done'),
    );
    expect(await history('t-3')).toEqual([
      'invoice.requested',
      'sendInvoice.failed',
      'statehouse.job.redriven',
      'sendInvoice.done',
    ]);
    const [rerun] = await engine.operations.list({ entityId: 't-3', state: 'completed' });
    expect(rerun?.id).toBe(redriven.newJobId);
    expect(rerun?.key).toBe(deadLetter!.key);
    await expect(engine.operations.redrive(deadLetter!.id)).rejects.toThrow(/no statehouse job has id/);
    // Nor can the failed original be retried now that its dead letter ran again.
    await expect(engine.operations.retry(deadLetter!.sourceId!)).rejects.toThrow(/already run again as job/);
  });

  it('cancels a job waiting to retry: it never runs again and the entity gets <handler>.failed', async () => {
    await request('t-4', 'slow.requested');
    const [pending] = await waitFor('the job to wait for its retry', async () => {
      const list = await engine.operations.list({ entityId: 't-4', state: 'pending' });
      return list.some((j) => j.state === 'retry') ? list : undefined;
    });
    await engine.operations.cancel(pending!.id, { reason: 'customer withdrew' });
    const types = await waitFor('the cancellation to reach the machine', async () => {
      const list = await history('t-4');
      return list.includes('slowRetry.failed') ? list : undefined;
    });
    expect(types).toEqual(['slow.requested', 'statehouse.job.cancelled', 'slowRetry.failed']);
    const { rows } = await t.pool.query<{ data: { code: string; message: string }; source: string }>(
      "select data, source from events where entity_id = 't-4' and type = 'slowRetry.failed'",
    );
    expect(rows[0]).toMatchObject({ source: 'operator', data: { code: 'JOB_CANCELLED' } });
    expect(rows[0]!.data.message).toMatch(/customer withdrew/);
    expect((await engine.operations.get(pending!.id)).state).toBe('cancelled');
    await expect(engine.operations.cancel(pending!.id)).rejects.toThrow(/only a job that has not started/);
  });
});

/** A saga stopped at a step no engine could undo, resumed by an engine that can. */
describe('a compensation no engine has', () => {
  let t: TestContext;
  beforeAll(async () => {
    t = await createTestContext();
  });
  afterAll(() => t.cleanup());

  const asHandlers = (list: readonly unknown[]) => list as unknown as Handler<never, unknown>[];
  const trip = (tripId: string) => entityRow(t.pool, tripId, 'trip');

  it('stops the saga with HANDLER_NOT_FOUND; an engine started with it resumes the saga at that step', async () => {
    // The dispatcher knows every handler; the only job worker runs bookSeat without its
    // compensation (an engine of an older release, say).
    await t.startEngine({ workflows, handlers: asHandlers(handlers), parts: { jobs: false } });
    const { compensate: _, ...seatWithoutUndo } = bookSeat;
    const older = await t.startEngine({
      workflows,
      handlers: asHandlers([seatWithoutUndo, payTrip]),
      parts: { ingest: false, dispatch: false, outbox: false },
    });
    controls.paymentFails.add('t-30');
    await t.publish(t.subject('trips.t-30.rush'), { type: 'rush.requested', data: null });
    await waitFor(
      'the saga to end with nothing to undo',
      async () => (await eventTypes(t.pool, 't-30', 'trip')).includes('saga.compensated') || undefined,
    );
    const answer = await waitFor('the seat booking to be running', async () =>
      controls.seatAnswers.get('t-30'),
    );
    answer();
    const stopped = await waitFor('the saga to stop at the seat', async () => {
      const row = await trip('t-30');
      return row?.status === 'needs-attention' ? row : undefined;
    });
    expect(stopped.state).toBe('cancelled');
    const { rows: steps } = await t.pool.query<{ status: string; error: { code: string; message: string } }>(
      "select status, error from saga_steps where entity_id = 't-30'",
    );
    expect(steps).toHaveLength(1);
    expect(steps[0]).toMatchObject({ status: 'compensation-failed', error: { code: 'HANDLER_NOT_FOUND' } });
    expect(steps[0]!.error.message).toMatch(/register it and restart the engine/);
    expect(undone).not.toContain('bookSeat:t-30');

    await older.stop();
    await t.startEngine({
      workflows,
      handlers: asHandlers(handlers),
      parts: { ingest: false, dispatch: false, outbox: false },
    });
    await waitFor('the seat to be undone', async () => undone.includes('bookSeat:t-30') || undefined);
    const types = await waitFor('the saga to end', async () => {
      const list = await eventTypes(t.pool, 't-30', 'trip');
      return list.filter((type) => type === 'saga.compensated').length === 2 ? list : undefined;
    });
    // A late step's undo ends quietly, unless, as here, it told the machine of a failure.
    expect(types.slice(-5)).toEqual([
      'bookSeat.done',
      'saga.compensationFailed',
      'statehouse.saga.resumed',
      'bookSeat.compensated',
      'saga.compensated',
    ]);
    await waitFor('the entity to be done', async () =>
      (await trip('t-30'))?.status === 'done' ? true : undefined,
    );
    const { rows } = await t.pool.query("select status from saga_steps where entity_id = 't-30'");
    expect(rows).toEqual([{ status: 'compensated' }]);
  });
});
