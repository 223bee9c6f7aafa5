import type pg from 'pg';
import { withTransaction } from '../db/index.ts';
import type { Logger } from '../shared/logger.ts';
import { PollingLoop } from '../shared/polling-loop.ts';
import { appendEvents, isDuplicateMessageError } from '../store/index.ts';
import type { TimerEffect } from '../workflows/index.ts';

export interface TimerChange {
  machine: string;
  entityId: string;
  effect: TimerEffect;
}

/**
 * Sets and cancels timers through the dispatcher's transaction, with the effect of applying
 * them in the order the machine asked: the last change to a timer id wins (setting it again
 * replaces it; cancelling one that already fired does nothing). One statement, which also
 * wakes the schedulers at commit.
 */
export async function writeTimers(client: pg.ClientBase, changes: readonly TimerChange[], channel: string) {
  if (changes.length === 0) return;
  const last = new Map<string, TimerChange>();
  for (const change of changes) {
    last.set(JSON.stringify([change.machine, change.entityId, change.effect.id]), change);
  }
  const sets = [...last.values()].filter(
    (c): c is TimerChange & { effect: Extract<TimerEffect, { kind: 'timer' }> } => c.effect.kind === 'timer',
  );
  const cancels = [...last.values()].filter((c) => c.effect.kind === 'cancel-timer');
  await client.query(
    `with cancelled as (
       delete from timers t using unnest($1::text[], $2::text[], $3::text[]) as c(machine, entity_id, timer_id)
       where t.machine = c.machine and t.entity_id = c.entity_id and t.timer_id = c.timer_id
     ),
     set as (
       insert into timers (machine, entity_id, timer_id, event, fire_at)
       select machine, entity_id, timer_id, event, now() + delay_ms * interval '1 millisecond'
       from unnest($4::text[], $5::text[], $6::text[], $7::jsonb[], $8::float8[])
         as s(machine, entity_id, timer_id, event, delay_ms)
       on conflict (machine, entity_id, timer_id)
       do update set event = excluded.event, fire_at = excluded.fire_at, created_at = now()
     )
     select pg_notify($9, '')::text`,
    [
      cancels.map((c) => c.machine),
      cancels.map((c) => c.entityId),
      cancels.map((c) => c.effect.id),
      sets.map((c) => c.machine),
      sets.map((c) => c.entityId),
      sets.map((c) => c.effect.id),
      sets.map((c) => JSON.stringify(c.effect.event)),
      sets.map((c) => c.effect.delayMs),
      channel,
    ],
  );
}

export interface TimerSchedulerOptions {
  pool: pg.Pool;
  databaseUrl: string;
  /** Where set timers are announced. */
  timerChannel: string;
  /** Where fired timers' events are announced: the dispatcher's channel. */
  dispatchChannel: string;
  pollIntervalMs: number;
  batchSize?: number;
  log: Logger;
}

interface DueTimer {
  id: number;
  machine: string;
  entityId: string;
  timerId: string;
  event: { type: string; data?: unknown };
  fireAt: Date;
}

/**
 * Fires due timers: in one transaction per batch, deletes them and appends each one's
 * event to its entity's stream. SKIP LOCKED lets every engine process run a scheduler;
 * a timer fires once, whoever takes it. Sleeps until the next timer is due (at most the
 * poll interval), and is woken when a timer is set.
 */
export class TimerScheduler {
  readonly #o: TimerSchedulerOptions;
  readonly #loop: PollingLoop;

  constructor(options: TimerSchedulerOptions) {
    this.#o = options;
    this.#loop = new PollingLoop({
      name: 'timers',
      databaseUrl: options.databaseUrl,
      channel: options.timerChannel,
      pollIntervalMs: options.pollIntervalMs,
      log: options.log,
      round: async () => {
        const { fired, nextInMs } = await this.fireDue();
        return { more: fired > 0, nextInMs };
      },
    });
  }

  start(): void {
    this.#loop.start();
  }

  stop(): Promise<void> {
    return this.#loop.stop();
  }

  /** Fires the timers due now; resolves with how many fired and when the next is due. */
  async fireDue(): Promise<{ fired: number; nextInMs: number | undefined }> {
    const { pool, dispatchChannel, batchSize = 200 } = this.#o;
    const fired = await withTransaction(
      pool,
      async (client) => {
        const { rows } = await client.query<DueTimer>(
          `delete from timers where id in (
             select id from timers where fire_at <= now() order by fire_at limit $1 for update skip locked)
           returning id, machine, entity_id as "entityId", timer_id as "timerId", event, fire_at as "fireAt"`,
          [batchSize],
        );
        await appendEvents(
          client,
          rows.map((t) => ({
            machine: t.machine,
            entityId: t.entityId,
            type: t.event.type,
            data: t.event.data ?? null,
            metadata: { timerId: t.timerId, dueAt: t.fireAt.toISOString() },
            messageId: `timer:${t.id}:${t.fireAt.getTime()}`,
            source: 'timer',
          })),
          { notifyChannel: dispatchChannel },
        );
        return rows.length;
      },
      { alsoRetry: isDuplicateMessageError },
    );
    // Only an idle round sleeps, and only it needs to know when the next timer is due.
    if (fired > 0) return { fired, nextInMs: undefined };
    // No timers: min() is null, and the loop sleeps its whole poll interval. (greatest(0, null)
    // is 0 in SQL, which once made an idle engine poll without pause.)
    const { rows } = await pool.query<{ ms: number | null }>(
      'select (extract(epoch from (min(fire_at) - now())) * 1000)::float8 as ms from timers',
    );
    const ms = rows[0]?.ms;
    return { fired, nextInMs: ms === null || ms === undefined ? undefined : Math.max(0, ms) };
  }
}
