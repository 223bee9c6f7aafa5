import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { setup } from 'xstate';
import { z } from 'zod';
import { workflows as demoWorkflows } from '../machines/index.ts';
import { TimerScheduler, writeTimers } from '../src/actors/timers.ts';
import { withTransaction } from '../src/db/index.ts';
import { createLogger } from '../src/shared/logger.ts';
import { defineWorkflow } from '../src/workflows/index.ts';
import { createTestContext, type TestContext, waitFor } from './helpers/context.ts';
import { entityRow, eventTypes } from './helpers/orders.ts';

/** A reminder that goes off a second after it is set, unless it is cancelled first. */
const reminderMachine = setup({
  types: { events: {} as { type: 'reminder.set' } | { type: 'reminder.cancel' } },
}).createMachine({
  id: 'reminder',
  initial: 'idle',
  states: {
    idle: { on: { 'reminder.set': 'waiting' } },
    waiting: { after: { 1000: 'reminded' }, on: { 'reminder.cancel': 'cancelled' } },
    reminded: { type: 'final' },
    cancelled: { type: 'final' },
  },
});
const reminders = defineWorkflow({
  name: 'reminder',
  version: 1,
  machine: reminderMachine,
  subjects: 'reminders.*.>',
  events: { 'reminder.set': z.null(), 'reminder.cancel': z.null() },
});
const workflows = [...demoWorkflows, reminders];

describe('durable timers', () => {
  let t: TestContext;
  beforeEach(async () => {
    t = await createTestContext();
  });
  afterEach(() => t.cleanup());

  const send = (id: string, type: string) =>
    t.publish(t.subject(`reminders.${id}.${type}`), { type, data: null });
  const timers = async () =>
    (await t.pool.query<{ entity_id: string }>('select entity_id from timers order by entity_id')).rows.map(
      (r) => r.entity_id,
    );

  it('a timer set before a restart fires once, after it', async () => {
    const first = await t.startEngine({ workflows });
    await send('r-1', 'reminder.set');
    await waitFor('the timer to be stored', async () => (await timers()).includes('r-1'));
    await first.stop();
    await new Promise((r) => setTimeout(r, 1200)); // due while no engine runs
    expect((await entityRow(t.pool, 'r-1', 'reminder'))?.state).toBe('waiting');

    await t.startEngine({ workflows });
    await waitFor(
      'the reminder to go off',
      async () => (await entityRow(t.pool, 'r-1', 'reminder'))?.state === 'reminded',
    );
    expect(await eventTypes(t.pool, 'r-1', 'reminder')).toEqual([
      'reminder.set',
      'xstate.after.1000.reminder.waiting',
    ]);
    expect(await timers()).toEqual([]);
  });

  it('a timer is set with its step or not at all: a step that fails to commit leaves none', async () => {
    let failures = 3;
    let release: () => void = () => {};
    const released = new Promise<void>((resolve) => {
      release = resolve;
    });
    await t.startEngine({
      workflows,
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
    await send('r-3', 'reminder.set');
    await waitFor('the failures to be used up', async () => failures === 0);
    // The failed steps, and the one waiting to commit, have left no timer behind.
    expect(await timers()).toEqual([]);
    release();
    await waitFor(
      'the reminder to go off',
      async () => (await entityRow(t.pool, 'r-3', 'reminder'))?.state === 'reminded',
    );
    expect(await eventTypes(t.pool, 'r-3', 'reminder')).toEqual([
      'reminder.set',
      'xstate.after.1000.reminder.waiting',
    ]);
    expect(await timers()).toEqual([]);
  });

  it('leaving the state that set a timer cancels it', async () => {
    await t.startEngine({ workflows });
    await send('r-2', 'reminder.set');
    await waitFor('waiting', async () => (await entityRow(t.pool, 'r-2', 'reminder'))?.state === 'waiting');
    await send('r-2', 'reminder.cancel');
    await waitFor(
      'cancelled',
      async () => (await entityRow(t.pool, 'r-2', 'reminder'))?.state === 'cancelled',
    );
    expect(await timers()).toEqual([]);
    await new Promise((r) => setTimeout(r, 1500)); // past the time it would have fired
    expect(await eventTypes(t.pool, 'r-2', 'reminder')).toEqual(['reminder.set', 'reminder.cancel']);
  });

  it('an idle engine waits for its poll interval: with no timers the scheduler does not spin', async () => {
    const scheduler = new TimerScheduler({
      pool: t.pool,
      databaseUrl: t.databaseUrl,
      timerChannel: 'statehouse.timers',
      dispatchChannel: 'statehouse.dispatch',
      pollIntervalMs: 1000,
      log: createLogger('silent'),
    });
    expect(await scheduler.fireDue()).toEqual({ fired: 0, nextInMs: undefined });
    await t.pool.query(
      `insert into timers (machine, entity_id, timer_id, event, fire_at)
       values ('reminder', 'idle-1', 'x', '{"type": "x"}', now() + interval '1 minute')`,
    );
    const { nextInMs } = await scheduler.fireDue();
    expect(nextInMs).toBeGreaterThan(50_000);
    await t.pool.query("delete from timers where entity_id = 'idle-1'");

    // The whole engine, idle: tens of transactions a second, not a loop.
    await t.startEngine({ workflows });
    await new Promise((r) => setTimeout(r, 1500));
    const committed = async () =>
      (
        await t.pool.query<{ n: number }>(
          'select (xact_commit + xact_rollback)::int as n from pg_stat_database where datname = current_database()',
        )
      ).rows[0]!.n;
    const before = await committed();
    await new Promise((r) => setTimeout(r, 3000));
    // About 150 here (job workers, dispatcher and timers polling at the test's short
    // intervals); the spinning scheduler made it several thousand.
    expect((await committed()) - before).toBeLessThan(600);
  });
});

describe('writeTimers', () => {
  let t: TestContext;
  beforeEach(async () => {
    t = await createTestContext();
  });
  afterEach(() => t.cleanup());

  it('applies a step’s timer changes in the order asked: the last change to a timer id wins', async () => {
    const owner = { machine: 'reminder', entityId: 'w-1' };
    const set = (id: string, delayMs: number, type: string) => ({
      ...owner,
      effect: { kind: 'timer' as const, id, event: { type }, delayMs },
    });
    const cancel = (id: string) => ({ ...owner, effect: { kind: 'cancel-timer' as const, id } });
    await withTransaction(t.pool, (client) =>
      writeTimers(
        client,
        [
          set('a', 1000, 'a.first'),
          cancel('a'),
          cancel('b'),
          set('b', 1000, 'b.set'),
          set('c', 1000, 'c.first'),
          set('c', 60_000, 'c.second'),
        ],
        'statehouse.timers',
      ),
    );
    const { rows } = await t.pool.query<{ timer_id: string; type: string; in_ms: number }>(
      `select timer_id, event->>'type' as type, extract(epoch from fire_at - created_at) * 1000 as in_ms
       from timers where entity_id = 'w-1' order by timer_id`,
    );
    expect(rows.map((r) => [r.timer_id, r.type])).toEqual([
      ['b', 'b.set'],
      ['c', 'c.second'],
    ]);
    expect(Math.round(rows[1]!.in_ms)).toBe(60_000);
  });
});
