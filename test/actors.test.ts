import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { assign, setup } from 'xstate';
import { z } from 'zod';
import { workflows as demoWorkflows } from '../machines/index.ts';
import { Dispatcher } from '../src/actors/index.ts';
import { dispatchChannel, withTransaction } from '../src/db/index.ts';
import { resumeEntity, resumeFailedEntities } from '../src/entities/index.ts';
import { createLogger } from '../src/shared/logger.ts';
import { appendEvents } from '../src/store/index.ts';
import { defineWorkflow, WorkflowRegistry } from '../src/workflows/index.ts';
import { ledgerWorkflow } from './fixtures/ledger-app.ts';
import { createTestContext, openTransactions, type TestContext, waitFor } from './helpers/context.ts';
import { entityRow, orderPlaced } from './helpers/orders.ts';

describe('actors', () => {
  let t: TestContext;
  beforeEach(async () => {
    t = await createTestContext();
  });
  afterEach(() => t.cleanup());

  const entry = (id: string, n: number) =>
    t.publish(t.subject(`ledger.${id}.entry`), { type: 'ledger.entry', data: { n } });

  it('a throwing guard fails only its entity, keeps the events before it, and resumes once fixed', async () => {
    const buggy = await t.startEngine({
      workflows: [...demoWorkflows, ledgerWorkflow({ guardThrows: true })],
    });
    await entry('a', 0);
    await t.publish(t.subject('ledger.a.boom'), { type: 'ledger.boom', data: null });
    await entry('a', 1);
    for (let n = 0; n < 3; n++) await entry('b', n);

    const failed = await waitFor('a to fail', async () => {
      const row = await entityRow(t.pool, 'a', 'ledger');
      return row?.status === 'failed' ? row : undefined;
    });
    expect(failed.applied_version).toBe(1);
    expect(failed.snapshot?.context.entries).toEqual([0]);
    expect(failed.error).toMatchObject({ eventVersion: 2, eventType: 'ledger.boom' });
    expect(failed.error?.message).toMatch(/guard 'explodes'.*guard bug: cannot evaluate/s);
    await waitFor(
      'b to apply all',
      async () => (await entityRow(t.pool, 'b', 'ledger'))?.applied_version === 3,
    );
    // Still failed: nothing re-applies a failed entity until someone resumes it.
    await new Promise((r) => setTimeout(r, 500));
    expect((await entityRow(t.pool, 'a', 'ledger'))?.status).toBe('failed');

    await buggy.stop();
    await t.startEngine({ workflows: [...demoWorkflows, ledgerWorkflow({ guardThrows: false })] });
    await resumeEntity(t.pool, 'a', { notifyChannel: dispatchChannel(t.config.database.schema) });
    const resumed = await waitFor('a to apply all', async () => {
      const row = await entityRow(t.pool, 'a', 'ledger');
      return row?.applied_version === 3 ? row : undefined;
    });
    expect(resumed.status).toBe('active');
    expect(resumed.error).toBeNull();
    expect(resumed.snapshot?.context.entries).toEqual([0, 1]);
  });

  it('resumes every failed entity of a machine with one call once it is fixed, and each once while it is not', async () => {
    const buggy = await t.startEngine({
      workflows: [...demoWorkflows, ledgerWorkflow({ guardThrows: true })],
    });
    for (const id of ['m-1', 'm-2', 'm-3']) {
      await entry(id, 0);
      await t.publish(t.subject(`ledger.${id}.boom`), { type: 'ledger.boom', data: null });
      await entry(id, 1);
    }
    const failedCount = async () =>
      (
        await t.pool.query<{ n: number }>(
          `select count(*)::int as n from entities where machine = 'ledger' and status = 'failed'`,
        )
      ).rows[0]!.n;
    await waitFor('three to fail', async () => (await failedCount()) === 3);
    const notifyChannel = dispatchChannel(t.config.database.schema);

    // Still broken: each is resumed once and fails again before the next batch is taken
    // (the pool below waits for that after each batch); none is taken a second time.
    const afterEachBatch = new Proxy(t.pool, {
      get(pool, property, receiver) {
        if (property !== 'query') return Reflect.get(pool, property, receiver);
        return async (text: string, values: unknown[]) => {
          const result = await pool.query(text, values);
          if (text.includes('resumed as'))
            await waitFor('the resumed one to fail again', async () => (await failedCount()) === 3);
          return result;
        };
      },
    });
    expect(
      await resumeFailedEntities(afterEachBatch, { machine: 'ledger', notifyChannel, batchSize: 1 }),
    ).toBe(3);

    await buggy.stop();
    await t.startEngine({ workflows: [...demoWorkflows, ledgerWorkflow({ guardThrows: false })] });
    // One row held a moment (an event being appended to it) is waited for, not left failed.
    const holder = await t.pool.connect();
    await holder.query('begin');
    await holder.query(`select 1 from entities where machine = 'ledger' and entity_id = 'm-2' for update`);
    const [{ pid: holderPid }] = (await holder.query<{ pid: number }>('select pg_backend_pid() as pid'))
      .rows as [{ pid: number }];
    const resuming = resumeFailedEntities(t.pool, { machine: 'ledger', notifyChannel });
    // Blocked by the holder itself, not by any other lock wait of the running engine.
    await waitFor('the resume to wait for the held row', async () => {
      const { rows } = await t.pool.query(
        'select 1 from pg_stat_activity where $1 = any(pg_blocking_pids(pid))',
        [holderPid],
      );
      return rows.length > 0;
    });
    await holder.query('commit');
    holder.release();
    expect(await resuming).toBe(3);
    for (const id of ['m-1', 'm-2', 'm-3']) {
      const row = await waitFor(`${id} to apply all`, async () => {
        const r = await entityRow(t.pool, id, 'ledger');
        return r?.applied_version === 3 ? r : undefined;
      });
      expect(row.status).toBe('active');
      expect(row.snapshot?.context.entries).toEqual([0, 1]);
    }
    expect(await resumeFailedEntities(t.pool, { machine: 'ledger', notifyChannel })).toBe(0);
  });

  it('a snapshot Postgres cannot store fails only its entity, which keeps its last stored state', async () => {
    // A meter that keeps an exact reading as a BigInt: a bug, since JSON cannot carry one.
    const meter = defineWorkflow({
      name: 'meter',
      version: 1,
      subjects: 'meters.*.>',
      events: { 'meter.read': z.object({ value: z.number().int(), exact: z.boolean() }) },
      machine: setup({
        types: {
          context: {} as { total: number | bigint },
          events: {} as { type: 'meter.read'; data: { value: number; exact: boolean } },
        },
      }).createMachine({
        context: { total: 0 },
        initial: 'counting',
        states: {
          counting: {
            on: {
              'meter.read': {
                actions: assign({
                  total: ({ event }) => (event.data.exact ? BigInt(event.data.value) : event.data.value),
                }),
              },
            },
          },
        },
      }),
    });
    await t.startEngine({ workflows: [...demoWorkflows, meter] });
    const read = (id: string, value: number, exact = false) =>
      t.publish(t.subject(`meters.${id}.read`), { type: 'meter.read', data: { value, exact } });
    await read('p', 1);
    await read('q', 1);
    await waitFor('both applied', async () => {
      const [p, q] = [await entityRow(t.pool, 'p', 'meter'), await entityRow(t.pool, 'q', 'meter')];
      return p?.applied_version === 1 && q?.applied_version === 1;
    });
    await read('p', 2, true);
    await read('q', 2);
    await read('q', 3);
    const p = await waitFor('p to fail', async () => {
      const row = await entityRow(t.pool, 'p', 'meter');
      return row?.status === 'failed' ? row : undefined;
    });
    expect(p.applied_version).toBe(1);
    expect(p.state).toBe('counting');
    expect(p.snapshot?.context).toEqual({ total: 1 });
    expect(p.error).toMatchObject({ code: 'SNAPSHOT_INVALID', eventVersion: 2 });
    expect(p.error?.message).toContain('machine "meter" made a snapshot that is not JSON');
    const q = await waitFor('q to go on', async () => {
      const row = await entityRow(t.pool, 'q', 'meter');
      return row?.applied_version === 3 ? row : undefined;
    });
    expect(q.status).toBe('active');
    expect(q.snapshot?.context).toEqual({ total: 3 });
  });

  it('works off a backlog longer than one step takes, in order', async () => {
    await t.startEngine({ workflows: [...demoWorkflows, ledgerWorkflow({ guardThrows: false })] });
    // Over the 100 events one step applies per entity.
    for (let n = 0; n < 250; n++) await entry('long', n);
    const row = await waitFor('all 250 applied', async () => {
      const r = await entityRow(t.pool, 'long', 'ledger');
      return r?.applied_version === 250 ? r : undefined;
    });
    expect(row.snapshot?.context.entries).toEqual(Array.from({ length: 250 }, (_, n) => n));
  });

  it('refuses to resume an entity that is not failed', async () => {
    await t.startEngine({ workflows: [...demoWorkflows, ledgerWorkflow({ guardThrows: false })] });
    await entry('c', 0);
    await waitFor('c applied', async () => (await entityRow(t.pool, 'c', 'ledger'))?.applied_version === 1);
    await expect(resumeEntity(t.pool, 'c', { notifyChannel: 'x' })).rejects.toThrow(/is active, not failed/);
  });
});

describe('steps', () => {
  let t: TestContext;
  beforeEach(async () => {
    t = await createTestContext();
  });
  afterEach(() => t.cleanup());

  it('ends the transaction of every round: one that applied entities, one that found none, one that failed', async () => {
    // The claim begins the round's transaction and the round commits it itself: a round
    // that left it open would hand its connection back to the pool mid-transaction.
    const dispatcher = new Dispatcher({
      pool: t.pool,
      databaseUrl: t.databaseUrl,
      registry: new WorkflowRegistry([ledgerWorkflow({ guardThrows: false })]),
      effects: { accepts: () => true, enqueue: async () => {} },
      notifyChannel: dispatchChannel(t.config.database.schema),
      outboxChannel: 'unused.outbox',
      timerChannel: 'unused.timers',
      concurrency: 1,
      batchSize: 10,
      pollIntervalMs: 1000,
      log: createLogger('silent'),
    });
    const append = (n: number) =>
      withTransaction(t.pool, (client) =>
        appendEvents(client, [
          {
            machine: 'ledger',
            entityId: 'r-1',
            type: 'ledger.entry',
            data: { n },
            messageId: `r-${n}`,
            source: 'nats',
          },
        ]),
      );
    await append(1);
    expect(await dispatcher.dispatchOnce()).toBe(1);
    expect(await openTransactions(t.databaseUrl)).toBe(0);
    expect((await entityRow(t.pool, 'r-1', 'ledger'))?.applied_version).toBe(1);
    expect(await dispatcher.dispatchOnce()).toBe(0);
    expect(await openTransactions(t.databaseUrl)).toBe(0);
    // A save Postgres refuses fails the round, which is rolled back.
    await t.pool.query(
      'alter table entities add constraint test_refuse check (applied_version < 2) not valid',
    );
    await append(2);
    await expect(dispatcher.dispatchOnce()).rejects.toMatchObject({ code: '23514' });
    expect(await openTransactions(t.databaseUrl)).toBe(0);
    await t.pool.query('alter table entities drop constraint test_refuse');
    expect(await dispatcher.dispatchOnce()).toBe(1);
    expect((await entityRow(t.pool, 'r-1', 'ledger'))?.snapshot?.context.entries).toEqual([1, 2]);
  });

  it('invariant atomic step: a step Postgres refuses at commit runs again, and its work happens once when it can', async () => {
    // Refuses, at commit (a deferred trigger), the state the order's first step moves to:
    // after the step has written its job. Counts the refusals (a sequence is not rolled
    // back with the step).
    await t.pool.query(`
      create sequence test_refusals;
      create function test_refuse_reserving() returns trigger language plpgsql as $$
        begin
          if new.state = '"reservingStock"' then
            perform nextval('test_refusals');
            raise exception 'refused by the test';
          end if;
          return new;
        end $$;
      create constraint trigger test_refuse_reserving after update on entities
        deferrable initially deferred for each row execute function test_refuse_reserving();`);
    await t.startEngine();
    await t.publish(t.subject('orders.sv-1.placed'), orderPlaced());
    await waitFor('the step to be refused twice', async () => {
      const { rows } = await t.pool.query<{ n: string }>('select last_value as n from test_refusals');
      return Number(rows[0]!.n) >= 2;
    });
    await t.pool.query('drop trigger test_refuse_reserving on entities');
    await waitFor(
      'sv-1 to apply its order',
      async () => ((await entityRow(t.pool, 'sv-1'))?.applied_version ?? 0) >= 1,
    );
    // Each refused try enqueued nothing that lasted: one reservation in all.
    const { rows } = await t.pool.query<{ n: number }>(
      "select count(*)::int as n from pgboss.job where name = 'statehouse.reserveStock'",
    );
    expect(rows[0]!.n).toBe(1);
  });

  it('invariant atomic step: a step that fails to commit leaves no state change, no job and no emitted event', async () => {
    let failures = 3;
    // Once the failures are used up, steps wait here until the test has looked: otherwise
    // the next step (the other dispatch loop may take it at once) can commit before the
    // check below reads the tables.
    let release = () => {};
    const released = new Promise<void>((resolve) => {
      release = resolve;
    });
    await t.startEngine({
      hooks: {
        beforeStepCommit: async () => {
          if (failures > 0) {
            failures--;
            throw new Error('simulated crash before the step commits');
          }
          await released;
        },
      },
    });
    await t.publish(t.subject('orders.at-1.placed'), orderPlaced({ paymentMethod: 'card_declined' }));
    // While the step keeps failing, nothing of it is visible.
    await waitFor('the failures to be used up', async () => failures === 0);
    const during = await t.pool.query<{ jobs: number; applied: number; outbox: number }>(
      `select (select count(*) from pgboss.job where name like 'statehouse.%')::int as jobs,
              (select applied_version from entities where entity_id = 'at-1') as applied,
              (select count(*) from outbox)::int as outbox`,
    );
    expect(during.rows[0]).toEqual({ jobs: 0, applied: 0, outbox: 0 });
    release();
    // Once steps commit, each one's work happens exactly once.
    await waitFor('at-1 cancelled', async () => (await entityRow(t.pool, 'at-1'))?.state === 'cancelled');
    const { rows } = await t.pool.query<{ name: string; n: number }>(
      "select name, count(*)::int as n from pgboss.job where name like 'statehouse.%' group by name order by name",
    );
    expect(rows).toEqual([
      { name: 'statehouse.chargePayment', n: 1 },
      // The declined charge failed for good and went to its dead-letter queue.
      { name: 'statehouse.chargePayment.dead', n: 1 },
      { name: 'statehouse.reserveStock', n: 1 },
      { name: 'statehouse.reserveStock.compensate', n: 1 },
    ]);
    const outbox = await t.pool.query<{ subject: string }>('select subject from outbox');
    expect(outbox.rows.map((r) => r.subject)).toEqual(['order-events.at-1.cancelled']);
  });
});
