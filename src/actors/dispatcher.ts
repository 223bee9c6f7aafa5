import type pg from 'pg';
import { preparedName, withTransaction } from '../db/index.ts';
import { type OutboxEntry, writeOutbox } from '../outbox/index.ts';
import type { Logger } from '../shared/logger.ts';
import { PollingLoop } from '../shared/polling-loop.ts';
import type { JobEffect, SagaEffect, WorkflowRegistry } from '../workflows/index.ts';
import { claimEntities } from './claim.ts';
import { applyEvents, type EntityRow, type PlannedEffect, type StepResult } from './step.ts';
import { type TimerChange, writeTimers } from './timers.ts';

export type PlannedJob = PlannedEffect & {
  effect: JobEffect | SagaEffect;
  machine: string;
  entityId: string;
};

/**
 * Where the jobs of a step go, and where a saga's compensation starts; implemented by the
 * jobs part, called inside the step's transaction.
 */
export interface EffectSink {
  accepts(effect: JobEffect): boolean;
  enqueue(client: pg.ClientBase, jobs: readonly PlannedJob[]): Promise<void>;
}

/** Bounds one transaction when an entity has a long backlog; the rest follows in the next. */
const MAX_EVENTS_PER_STEP = 100;

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
  log: Logger;
}

// The keys as arrays (unnest: the planner expects a few rows and probes the primary key;
// with a JSON function's default estimate of 100 rows it hashes the whole table), the rest
// as one JSON document, the i-th element for the i-th key: cheaper to build than escaped
// array literals of snapshots.
const SAVE_SQL = `
update entities e
set snapshot = s.step -> 'snapshot',
    -- A step that applied nothing (the machine is missing, or failed) keeps the state shown.
    state = coalesce(nullif(s.step -> 'state', 'null'::jsonb), e.state),
    -- A saga the engine is compensating outranks what the machine's state says.
    status = case
      when s.step ->> 'status' <> 'failed' and e.saga_state = 'needs-attention' then 'needs-attention'
      when s.step ->> 'status' = 'active' and e.saga_state = 'compensating' then 'compensating'
      else s.step ->> 'status' end,
    machine_version = (s.step ->> 'machineVersion')::int,
    applied_version = (s.step ->> 'appliedVersion')::int,
    error = nullif(s.step -> 'error', 'null'::jsonb), updated_at = now(),
    pending_since = case when (s.step ->> 'appliedVersion')::int < e.last_version then now() end
from unnest($1::text[], $2::text[]) with ordinality as u(machine, entity_id, i)
cross join lateral (select $3::jsonb -> (u.i::int - 1) as step) s
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
    // The claim begins the transaction (one round trip fewer, see beginWith); the step,
    // whatever it found, ends with the commit.
    return withTransaction(
      this.#options.pool,
      async (client) => {
        const moved = await this.#step(client);
        await client.query('commit');
        return moved;
      },
      { workBegins: true },
    );
  }

  /** Claims, applies and writes, in the transaction the claim begins; commits nothing. */
  async #step(client: pg.ClientBase): Promise<number> {
    const { registry, effects, batchSize, log } = this.#options;
    const claimed = await claimEntities(client, {
      limit: batchSize,
      machines: registry.names,
      eventsPerEntity: MAX_EVENTS_PER_STEP,
    });
    if (claimed.length === 0) return 0;
    const results: Array<{ entity: EntityRow; result: StepResult }> = [];
    for (const { entity, events } of claimed) {
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
  }
}

async function save(
  client: pg.ClientBase,
  results: ReadonlyArray<{ entity: EntityRow; result: StepResult }>,
) {
  // Built as text around each snapshot's JSON, which is already serialised: parsing it back
  // only to serialise it again was a tenth of a step's CPU.
  const steps = results.map(
    ({ result }) =>
      `{"snapshot":${result.snapshotJson},"state":${JSON.stringify(result.state ?? null)},"status":${JSON.stringify(result.status)},"machineVersion":${JSON.stringify(result.machineVersion)},"appliedVersion":${result.appliedVersion},"error":${JSON.stringify(result.error ?? null)}}`,
  );
  await client.query({
    name: await preparedName(client, 'statehouse.save-steps', ['entities']),
    text: SAVE_SQL,
    values: [
      results.map(({ entity }) => entity.machine),
      results.map(({ entity }) => entity.entityId),
      `[${steps.join(',')}]`,
    ],
  });
}
