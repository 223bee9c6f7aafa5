import type pg from 'pg';
import { withTransaction } from '../db/index.ts';
import { type OutboxEntry, writeOutbox } from '../outbox/index.ts';
import type { Logger } from '../shared/logger.ts';
import { PollingLoop } from '../shared/polling-loop.ts';
import { entityKey, readPendingEvents } from '../store/index.ts';
import type { JobEffect, WorkflowRegistry } from '../workflows/index.ts';
import { applyEvents, type EntityRow, type PlannedEffect, type StepResult } from './step.ts';
import { type TimerChange, writeTimers } from './timers.ts';

export type PlannedJob = PlannedEffect & { effect: JobEffect; machine: string; entityId: string };

/** Where the jobs of a step go; implemented by the jobs part, called inside the step's transaction. */
export interface EffectSink {
  accepts(effect: JobEffect): boolean;
  enqueue(client: pg.ClientBase, jobs: readonly PlannedJob[]): Promise<void>;
}

export interface DispatcherOptions {
  pool: pg.Pool;
  databaseUrl: string;
  registry: WorkflowRegistry;
  effects: EffectSink;
  notifyChannel: string;
  /** Wakes the outbox relay when a step emitted events. */
  outboxChannel: string;
  /** Wakes the timer schedulers when a step set a timer. */
  timerChannel: string;
  /** Fault hook for tests: runs just before a step's transaction commits; may throw. */
  hooks?: { beforeStepCommit?: () => void | Promise<void> };
  concurrency: number;
  batchSize: number;
  pollIntervalMs: number;
  /** Bounds one transaction when an entity has a long backlog; the rest follows in the next. */
  maxEventsPerEntity?: number;
  log: Logger;
}

const CLAIM_SQL = `
select machine, entity_id as "entityId", machine_version as "machineVersion", snapshot,
       applied_version as "appliedVersion"
from entities
where pending_since is not null and status <> 'failed' and applied_version < last_version
  and machine = any($2::text[])
order by pending_since
limit $1
for update skip locked`;

const SAVE_SQL = `
update entities e
set snapshot = u.snapshot, state = u.state, status = u.status, machine_version = u.machine_version,
    applied_version = u.applied_version, error = u.error, updated_at = now(),
    pending_since = case when u.applied_version < e.last_version then now() end
from unnest($1::text[], $2::text[], $3::jsonb[], $4::jsonb[], $5::text[], $6::int[], $7::int[], $8::jsonb[])
  as u(machine, entity_id, snapshot, state, status, machine_version, applied_version, error)
where e.machine = u.machine and e.entity_id = u.entity_id`;

/**
 * Moves entities forward: claims entities with unapplied events (SKIP LOCKED, so any
 * number of processes can share the work), applies the events with the pure XState
 * transition, and in the same transaction stores the new snapshots and enqueues the
 * effects. One entity is only ever held by one transaction, which is what keeps its
 * events in order across processes.
 */
export class Dispatcher {
  readonly #options: DispatcherOptions;
  readonly #loop: PollingLoop;

  constructor(options: DispatcherOptions) {
    this.#options = options;
    this.#loop = new PollingLoop({
      name: 'dispatch',
      databaseUrl: options.databaseUrl,
      channel: options.notifyChannel,
      pollIntervalMs: options.pollIntervalMs,
      concurrency: options.concurrency,
      log: options.log,
      round: async () => ({ more: (await this.dispatchOnce()) === options.batchSize }),
    });
  }

  start(): void {
    this.#loop.start();
  }

  /** Lets the transactions in flight commit, then stops; unclaimed work stays for the next start. */
  stop(): Promise<void> {
    return this.#loop.stop();
  }

  /** One claim-apply-commit round; resolves with how many entities it moved. */
  async dispatchOnce(): Promise<number> {
    const { pool, registry, effects, batchSize, log } = this.#options;
    const maxEvents = this.#options.maxEventsPerEntity ?? 100;
    return withTransaction(pool, async (client) => {
      const { rows: claimed } = await client.query<EntityRow>(CLAIM_SQL, [batchSize, registry.names]);
      if (claimed.length === 0) return 0;
      const pending = await readPendingEvents(client, claimed, maxEvents);
      const results: Array<{ entity: EntityRow; result: StepResult }> = [];
      for (const entity of claimed) {
        const events = pending.get(entityKey(entity.machine, entity.entityId)) ?? [];
        const result = applyEvents(registry, entity, events, (effect) => effects.accepts(effect));
        if (result.error) {
          log.warn(
            { machine: entity.machine, entityId: entity.entityId, error: result.error },
            'entity failed',
          );
        }
        results.push({ entity, result });
      }
      await save(client, results);
      const jobs: PlannedJob[] = [];
      const emitted: OutboxEntry[] = [];
      const timers: TimerChange[] = [];
      for (const { entity, result } of results) {
        for (const planned of result.effects) {
          const { effect } = planned;
          const owner = { machine: entity.machine, entityId: entity.entityId };
          if (effect.kind === 'timer' || effect.kind === 'cancel-timer') {
            timers.push({ ...owner, effect });
          } else if (effect.kind === 'emit') {
            const { subject, type, data } = effect;
            emitted.push({ ...owner, subject, type, data, headers: { 'Causation-Id': planned.key } });
          } else {
            jobs.push({ ...planned, effect, ...owner });
          }
        }
      }
      if (jobs.length > 0) await effects.enqueue(client, jobs);
      await writeOutbox(client, emitted, this.#options.outboxChannel);
      await writeTimers(client, timers, this.#options.timerChannel);
      await this.#options.hooks?.beforeStepCommit?.();
      return claimed.length;
    });
  }
}

async function save(
  client: pg.ClientBase,
  results: ReadonlyArray<{ entity: EntityRow; result: StepResult }>,
) {
  await client.query(SAVE_SQL, [
    results.map(({ entity }) => entity.machine),
    results.map(({ entity }) => entity.entityId),
    results.map(({ result }) => JSON.stringify(result.snapshot ?? null)),
    results.map(({ result }) => JSON.stringify(result.state ?? null)),
    results.map(({ result }) => result.status),
    results.map(({ result }) => result.machineVersion),
    results.map(({ result }) => result.appliedVersion),
    results.map(({ result }) => (result.error ? JSON.stringify(result.error) : null)),
  ]);
}
