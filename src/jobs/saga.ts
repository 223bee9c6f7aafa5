import { randomUUID } from 'node:crypto';
import type pg from 'pg';
import { appendEvents } from '../store/index.ts';
import type { JobData } from './queues.ts';

/**
 * The saga the engine drives, in SQL on the caller's transaction: completed compensable
 * runs are recorded as steps; `compensateCompleted()` undoes them newest first, one
 * compensation job at a time; each compensation's outcome moves the saga on.
 */

export interface SagaDeps {
  notifyChannel: string;
  /** Enqueues a compensation job on the same transaction. */
  enqueueCompensation: (client: pg.ClientBase, data: JobData) => Promise<void>;
}

interface Cause {
  position: number;
  version: number;
  type: string;
}

/** Records a completed compensable run as the entity's newest saga step. */
export async function recordSagaStep(client: pg.ClientBase, data: JobData, result: unknown): Promise<void> {
  await client.query(
    `insert into saga_steps (step_key, machine, entity_id, handler, input, result)
     values ($1, $2, $3, $4, $5, $6)
     on conflict (step_key) do nothing`,
    [
      data.key,
      data.machine,
      data.entityId,
      data.handler,
      JSON.stringify(data.input ?? null),
      JSON.stringify(result ?? null),
    ],
  );
}

/** Starts undoing the entity's completed steps; with none, the saga is compensated at once. */
export async function startCompensation(
  client: pg.ClientBase,
  entity: { machine: string; entityId: string },
  cause: Cause,
  deps: SagaDeps,
): Promise<void> {
  await client.query(
    `update entities set saga_state = 'compensating' where machine = $1 and entity_id = $2`,
    [entity.machine, entity.entityId],
  );
  await compensateNext(client, entity, cause, deps);
}

/** Moves the saga on after one compensation's outcome was recorded (`cause` is that outcome event). */
export async function onCompensationOutcome(
  client: pg.ClientBase,
  data: JobData & { saga: { stepKey: string } },
  outcome: { ok: true } | { ok: false; error: unknown; jobId: string },
  cause: Cause,
  deps: SagaDeps,
): Promise<void> {
  const entity = { machine: data.machine, entityId: data.entityId };
  if (outcome.ok) {
    await client.query(
      `update saga_steps set status = 'compensated', error = null, updated_at = now() where step_key = $1`,
      [data.saga.stepKey],
    );
    await client.query(
      `update entities set saga_state = 'compensating' where machine = $1 and entity_id = $2`,
      [entity.machine, entity.entityId],
    );
    await compensateNext(client, entity, cause, deps);
    return;
  }
  await client.query(
    `update saga_steps set status = 'compensation-failed', error = $2, updated_at = now() where step_key = $1`,
    [data.saga.stepKey, JSON.stringify(outcome.error ?? null)],
  );
  await client.query(
    `update entities set saga_state = 'needs-attention' where machine = $1 and entity_id = $2`,
    [entity.machine, entity.entityId],
  );
  await appendEngineEvent(client, entity, 'saga.compensationFailed', deps, {
    handler: data.handler,
    jobId: outcome.jobId,
    error: outcome.error,
  });
}

async function compensateNext(
  client: pg.ClientBase,
  entity: { machine: string; entityId: string },
  cause: Cause,
  deps: SagaDeps,
): Promise<void> {
  const { rows } = await client.query<{ stepKey: string; handler: string; input: unknown; result: unknown }>(
    `select step_key as "stepKey", handler, input, result from saga_steps
     where machine = $1 and entity_id = $2 and status = 'done'
     order by seq desc limit 1 for update`,
    [entity.machine, entity.entityId],
  );
  const step = rows[0];
  if (!step) {
    await client.query(`update entities set saga_state = null where machine = $1 and entity_id = $2`, [
      entity.machine,
      entity.entityId,
    ]);
    await appendEngineEvent(client, entity, 'saga.compensated', deps, null);
    return;
  }
  await client.query(
    `update saga_steps set status = 'compensating', updated_at = now() where step_key = $1`,
    [step.stepKey],
  );
  await deps.enqueueCompensation(client, {
    machine: entity.machine,
    entityId: entity.entityId,
    handler: step.handler,
    kind: 'compensate',
    input: { input: step.input, result: step.result },
    // The undo of a step has a key of its own, the same however often it is retried.
    key: `undo:${step.stepKey}`,
    causedBy: cause,
    saga: { stepKey: step.stepKey },
  });
}

async function appendEngineEvent(
  client: pg.ClientBase,
  entity: { machine: string; entityId: string },
  type: string,
  deps: SagaDeps,
  data: unknown,
): Promise<void> {
  await appendEvents(
    client,
    [
      {
        ...entity,
        type,
        data,
        // Exactly once already: it is written in the transaction of what caused it.
        messageId: `engine:${randomUUID()}`,
        source: 'engine',
      },
    ],
    { notifyChannel: deps.notifyChannel },
  );
}
