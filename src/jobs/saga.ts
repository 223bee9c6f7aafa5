import type pg from 'pg';
import { appendCaused } from '../store/index.ts';
import type { JobData } from './queues.ts';

/**
 * The saga the engine drives, in SQL on the caller's transaction: completed compensable
 * runs are recorded as steps; `compensateCompleted()` undoes them newest first, one
 * compensation job at a time; each compensation's outcome moves the saga on. Callers
 * already hold the entity's row lock (the dispatcher's claim, the append that recorded the
 * outcome, an operation's `for update`), so saga work serialises per entity.
 */

export interface SagaDeps {
  notifyChannel: string;
  /** Whether this engine can run `handler`'s compensation. */
  canCompensate: (handler: string) => boolean;
  /** Enqueues a compensation job on the same transaction. */
  enqueueCompensation: (client: pg.ClientBase, data: JobData) => Promise<void>;
}

interface Cause {
  position: number;
  version: number;
  type: string;
}

type Entity = { machine: string; entityId: string };

/** Records completed compensable runs as saga steps, in one statement, in the order given. */
export async function recordSagaSteps(
  client: pg.ClientBase,
  steps: ReadonlyArray<{ data: JobData; result: unknown }>,
): Promise<void> {
  if (steps.length === 0) return;
  await client.query(
    `insert into saga_steps (step_key, machine, entity_id, handler, input, result, planned_version)
     select step_key, machine, entity_id, handler, coalesce(input, 'null'::jsonb), coalesce(result, 'null'::jsonb),
            planned_version
     from rows from (jsonb_to_recordset($1::jsonb) as (
       step_key text, machine text, entity_id text, handler text, input jsonb, result jsonb, planned_version int))
       with ordinality as s(step_key, machine, entity_id, handler, input, result, planned_version, ord)
     order by ord
     on conflict (step_key) do nothing`,
    [
      JSON.stringify(
        steps.map(({ data, result }) => ({
          step_key: data.key,
          machine: data.machine,
          entity_id: data.entityId,
          handler: data.handler,
          input: data.input ?? null,
          result: result ?? null,
          planned_version: data.causedBy.version,
        })),
      ),
    ],
  );
}

/**
 * Starts undoing the entity's completed steps; with none, the saga is compensated at once.
 * A saga already compensating, or waiting for attention, is not started a second time.
 */
export async function startCompensation(
  client: pg.ClientBase,
  entity: Entity,
  cause: Cause,
  deps: SagaDeps,
): Promise<void> {
  // It undoes every completed step not undone yet, those that complete while it runs too:
  // everything planned before its saga.compensated. A restart (see `undoLateSteps`) in
  // progress becomes this saga and ends with `saga.compensated`. The status shows at once,
  // also for machines without a `compensating` tag.
  const { rowCount } = await client.query(
    `update entities set saga_state = coalesce(saga_state, 'compensating'),
            saga_before_version = null, saga_is_restart = false,
            status = case when status = 'active' then 'compensating' else status end
     where machine = $1 and entity_id = $2 and (saga_state is null or saga_is_restart)`,
    [entity.machine, entity.entityId],
  );
  if (rowCount === 0) return;
  await compensateNext(client, entity, cause, deps);
}

/**
 * A compensable run that completes after its saga was compensated (it was still running,
 * or waiting to retry, when the machine called `compensateCompleted()`) would otherwise
 * never be undone: the saga starts again for it. A run the machine started after the saga
 * ended (its cause comes after `saga.compensated`) is a step of a saga still to come.
 * A saga compensating or waiting for an operator picks the new step up by itself. One query
 * finds the late ones among a batch's new steps; nearly always there are none.
 */
export async function undoLateSteps(
  client: pg.ClientBase,
  steps: ReadonlyArray<{ data: JobData; cause: Cause }>,
  deps: SagaDeps,
): Promise<void> {
  if (steps.length === 0) return;
  const { rows } = await client.query<{ i: number; endedAt: number | null }>(
    `select s.i::int as i,
            (select min(e.version) from events e
             where e.machine = s.machine and e.entity_id = s.entity_id and e.type = 'saga.compensated'
               and e.source = 'engine' and e.version > s.planned) as "endedAt"
     from unnest($1::text[], $2::text[], $3::int[]) with ordinality as s(machine, entity_id, planned, i)
     order by s.i`,
    [
      steps.map(({ data }) => data.machine),
      steps.map(({ data }) => data.entityId),
      steps.map(({ data }) => data.causedBy.version),
    ],
  );
  for (const { i, endedAt } of rows) {
    if (endedAt === null) continue;
    const { data, cause } = steps[i - 1]!;
    await restartFor(client, { machine: data.machine, entityId: data.entityId }, endedAt, cause, deps);
  }
}

/**
 * Undoes, quietly (the machine had its saga.compensated), the steps planned before the
 * `saga.compensated` at `endedAt`. A restart running already widens to them; a regular saga
 * running takes every step anyway.
 */
async function restartFor(
  client: pg.ClientBase,
  entity: Entity,
  endedAt: number,
  cause: Cause,
  deps: SagaDeps,
): Promise<void> {
  const { rows: started } = await client.query<{ fresh: boolean }>(
    `with before as (
       select saga_state, saga_is_restart from entities where machine = $1 and entity_id = $2 for update
     )
     update entities e set saga_state = coalesce(before.saga_state, 'compensating'),
            saga_before_version = greatest(e.saga_before_version, $3), saga_is_restart = true
     from before
     where e.machine = $1 and e.entity_id = $2 and (before.saga_state is null or before.saga_is_restart)
     returning before.saga_state is null as fresh`,
    [entity.machine, entity.entityId, endedAt],
  );
  if (started[0]?.fresh) await compensateNext(client, entity, cause, deps);
}

/**
 * Moves the saga on after one compensation's outcome was recorded (`cause` is that outcome
 * event). Only the undo the saga waits for moves it: an outcome for a step that is not
 * being compensated (a stale job's, one the dead-letter sweep settled while an operator
 * reran it) stays in the history and changes nothing.
 */
export async function onCompensationOutcome(
  client: pg.ClientBase,
  data: JobData & { saga: { stepKey: string } },
  outcome: { ok: true } | { ok: false; error: unknown; jobId: string },
  cause: Cause,
  deps: SagaDeps,
): Promise<void> {
  const entity = { machine: data.machine, entityId: data.entityId };
  if (outcome.ok) {
    const { rowCount } = await client.query(
      `update saga_steps set status = 'compensated', error = null, updated_at = now()
       where step_key = $1 and status = 'compensating'`,
      [data.saga.stepKey],
    );
    if (rowCount === 0) return;
    await compensateNext(client, entity, cause, deps);
    return;
  }
  const { rows } = await client.query<{ status: string }>(
    'select status from saga_steps where step_key = $1',
    [data.saga.stepKey],
  );
  if (rows[0]?.status !== 'compensating') return;
  await failStep(
    client,
    entity,
    data.saga.stepKey,
    data.handler,
    { ...asObject(outcome.error), jobId: outcome.jobId },
    deps,
  );
}

/**
 * Makes a failed step's saga compensate again (an operator re-runs its undo, or an engine
 * that has the missing compensation starts). With `onlyIf`, only a step still in that
 * status; says whether it reopened the step.
 */
export async function reopenStep(
  client: pg.ClientBase,
  entity: Entity,
  stepKey: string,
  onlyIf?: string,
): Promise<boolean> {
  const { rowCount } = await client.query(
    `update saga_steps set status = 'compensating', updated_at = now()
     where step_key = $1 and ($2::text is null or status = $2)`,
    [stepKey, onlyIf ?? null],
  );
  if (rowCount === 0) return false;
  await client.query(
    `update entities set saga_state = 'compensating' where machine = $1 and entity_id = $2`,
    [entity.machine, entity.entityId],
  );
  return true;
}

async function compensateNext(
  client: pg.ClientBase,
  entity: Entity,
  cause: Cause,
  deps: SagaDeps,
): Promise<void> {
  const { rows } = await client.query<{
    stepKey: string;
    handler: string;
    input: unknown;
    result: unknown;
    status: string;
    isRestart: boolean;
    announce: boolean;
  }>(
    `select s.step_key as "stepKey", s.handler, s.input, s.result, s.status, e.saga_is_restart as "isRestart",
            -- A restart that told the machine of a failure tells it of the end too.
            e.saga_is_restart and exists (
              select 1 from events f
              where f.machine = e.machine and f.entity_id = e.entity_id and f.type = 'saga.compensationFailed'
                and f.source = 'engine' and f.version > e.saga_before_version
            ) as "announce"
     from entities e
     left join saga_steps s
       on s.machine = e.machine and s.entity_id = e.entity_id and s.status <> 'compensated'
      -- A restart takes only steps it can place before its bound.
      and (e.saga_before_version is null or s.planned_version < e.saga_before_version)
     where e.machine = $1 and e.entity_id = $2
     order by s.seq desc`,
    [entity.machine, entity.entityId],
  );
  const steps = rows.filter((row) => row.stepKey !== null);
  // One chain at a time: while an undo runs or waits for an operator, nothing else starts.
  if (steps.some((step) => step.status === 'compensating' || step.status === 'compensation-failed')) return;
  const step = steps[0];
  if (!step) {
    await client.query(
      `update entities set saga_state = null, saga_before_version = null, saga_is_restart = false
       where machine = $1 and entity_id = $2`,
      [entity.machine, entity.entityId],
    );
    if (!rows[0]?.isRestart || rows[0].announce) {
      await appendEngineEvent(client, entity, 'saga.compensated', deps, null);
    }
    return;
  }
  if (!deps.canCompensate(step.handler)) {
    await failStep(
      client,
      entity,
      step.stepKey,
      step.handler,
      {
        name: 'HandlerNotFound',
        code: 'HANDLER_NOT_FOUND',
        message: `handler "${step.handler}" with a compensate function is not registered in this engine; register it and restart the engine: the saga resumes at this step`,
      },
      deps,
    );
    return;
  }
  await client.query(
    `update saga_steps set status = 'compensating', updated_at = now() where step_key = $1`,
    [step.stepKey],
  );
  await enqueueUndo(client, entity, step, cause, deps);
}

interface StepRow {
  stepKey: string;
  handler: string;
  input: unknown;
  result: unknown;
}

function enqueueUndo(client: pg.ClientBase, entity: Entity, step: StepRow, cause: Cause, deps: SagaDeps) {
  return deps.enqueueCompensation(client, {
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

/**
 * Sagas stopped at a step whose compensation no engine could run (HANDLER_NOT_FOUND), for
 * `handlers` that this engine now has: each such step is undone again, and its entity's
 * history gets `statehouse.saga.resumed`. Run when the job runner starts, so registering
 * the compensation and restarting is all it takes. Returns how many steps were resumed.
 */
export async function resumeStepsMissingHandlers(
  client: pg.ClientBase,
  handlers: readonly string[],
  deps: SagaDeps,
): Promise<number> {
  if (handlers.length === 0) return 0;
  const { rows: stalled } = await client.query<StepRow & Entity>(
    `select step_key as "stepKey", machine, entity_id as "entityId", handler, input, result
     from saga_steps
     where status = 'compensation-failed' and error ->> 'code' = 'HANDLER_NOT_FOUND' and handler = any($1)
     order by seq`,
    [handlers],
  );
  let resumed = 0;
  for (const step of stalled) {
    const entity = { machine: step.machine, entityId: step.entityId };
    // The entity first, as every saga change takes it; then the step, still stalled?
    await client.query('select 1 from entities where machine = $1 and entity_id = $2 for update', [
      entity.machine,
      entity.entityId,
    ]);
    if (!(await reopenStep(client, entity, step.stepKey, 'compensation-failed'))) continue;
    const cause = await appendEngineEvent(client, entity, 'statehouse.saga.resumed', deps, {
      handler: step.handler,
      stepKey: step.stepKey,
    });
    await enqueueUndo(client, entity, step, cause, deps);
    resumed++;
  }
  return resumed;
}

async function failStep(
  client: pg.ClientBase,
  entity: Entity,
  stepKey: string,
  handler: string,
  error: Record<string, unknown>,
  deps: SagaDeps,
): Promise<void> {
  await client.query(
    `update saga_steps set status = 'compensation-failed', error = $2, updated_at = now() where step_key = $1`,
    [stepKey, JSON.stringify(error)],
  );
  await client.query(
    `update entities set saga_state = 'needs-attention',
            status = case when status <> 'failed' then 'needs-attention' else status end
     where machine = $1 and entity_id = $2`,
    [entity.machine, entity.entityId],
  );
  await appendEngineEvent(client, entity, 'saga.compensationFailed', deps, {
    handler,
    jobId: error.jobId ?? null,
    error,
  });
}

function asObject(value: unknown): Record<string, unknown> {
  return value !== null && typeof value === 'object'
    ? { ...(value as Record<string, unknown>) }
    : { message: String(value) };
}

async function appendEngineEvent(
  client: pg.ClientBase,
  entity: Entity,
  type: string,
  deps: SagaDeps,
  data: unknown,
): Promise<Cause> {
  const { appended } = await appendCaused(
    client,
    { ...entity, type, data, source: 'engine' },
    { notifyChannel: deps.notifyChannel },
  );
  const event = appended[0]!;
  return { position: event.position, version: event.version, type };
}
