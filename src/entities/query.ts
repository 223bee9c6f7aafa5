import type pg from 'pg';
import { ENTITY_STATUSES, type EntityStatus } from '../actors/index.ts';
import { StatehouseError } from '../errors/index.ts';
import { readStream, type StoredEvent } from '../store/index.ts';

export interface EntityView {
  machine: string;
  entityId: string;
  machineVersion: number | null;
  status: string;
  state: unknown;
  context: unknown;
  version: number;
  appliedVersion: number;
  error: unknown;
  createdAt: Date;
  updatedAt: Date;
  /** The saga the engine drives for this entity: where compensation stands, and its steps. */
  saga: SagaView;
  history: StoredEvent[];
}

export interface SagaView {
  /** `compensating` while undoing, `needs-attention` once an undo failed for good, else null. */
  state: 'compensating' | 'needs-attention' | null;
  /** Completed compensable runs, oldest first. */
  steps: Array<{
    handler: string;
    status: 'done' | 'compensating' | 'compensated' | 'compensation-failed';
    stepKey: string;
    completedAt: Date;
    updatedAt: Date;
    error: unknown;
  }>;
}

/**
 * Finds an entity by id. Ids are unique per machine, so when several machines have the
 * same id the caller must say which.
 */
type EntityRow = Omit<EntityView, 'history' | 'context' | 'saga'> & {
  snapshot: { context?: unknown } | null;
  sagaState: SagaView['state'];
};

/** The one entity with this id (of this machine, when given), or a clear error naming what to pass. */
async function findEntity(pool: pg.Pool, entityId: string, machine?: string): Promise<EntityRow> {
  const { rows } = await pool.query<EntityRow>(
    `select machine, entity_id as "entityId", machine_version as "machineVersion", status, state, snapshot,
            last_version as version, applied_version as "appliedVersion", error,
            created_at as "createdAt", updated_at as "updatedAt", saga_state as "sagaState"
     from entities where entity_id = $1 and ($2::text is null or machine = $2)`,
    [entityId, machine ?? null],
  );
  if (rows.length === 0) {
    throw new StatehouseError(
      'ENTITY_NOT_FOUND',
      `no entity "${entityId}"${machine ? ` of machine "${machine}"` : ''}`,
    );
  }
  if (rows.length > 1) {
    throw new StatehouseError(
      'ENTITY_AMBIGUOUS',
      `"${entityId}" is an entity of several machines (${rows.map((r) => r.machine).join(', ')}); say which with --machine`,
    );
  }
  return rows[0]!;
}

export async function getEntity(pool: pg.Pool, entityId: string, machine?: string): Promise<EntityView> {
  const { snapshot, sagaState, ...row } = await findEntity(pool, entityId, machine);
  const history = await readStream(pool, row.machine, row.entityId);
  const { rows: steps } = await pool.query<SagaView['steps'][number]>(
    `select handler, status, step_key as "stepKey", completed_at as "completedAt", updated_at as "updatedAt", error
     from saga_steps where machine = $1 and entity_id = $2 order by seq`,
    [row.machine, row.entityId],
  );
  return { ...row, context: snapshot?.context ?? null, saga: { state: sagaState, steps }, history };
}

/** What resuming sets on a failed entity: back in the dispatcher's queue if it has events to apply. */
const RESUMED = `status = 'active', error = null, updated_at = now(),
  pending_since = case when applied_version < last_version then now() end`;

/**
 * Puts a `failed` entity back to work: the dispatcher re-applies the event that failed,
 * with the machine as it is now registered. Resolves with the entity's machine.
 */
export async function resumeEntity(
  pool: pg.Pool,
  entityId: string,
  options: { machine?: string | undefined; notifyChannel: string },
): Promise<string> {
  const { machine, notifyChannel } = options;
  const entity = await findEntity(pool, entityId, machine);
  if (entity.status !== 'failed') {
    throw new StatehouseError(
      'USAGE',
      `entity "${entityId}" of machine "${entity.machine}" is ${entity.status}, not failed; only failed entities are resumed`,
    );
  }
  // The NOTIFY rides in the same statement: delivered when it commits.
  await pool.query(
    `with resumed as (
       update entities set ${RESUMED}
       where machine = $1 and entity_id = $2 and status = 'failed'
     )
     select pg_notify($3, '')::text`,
    [entity.machine, entityId, notifyChannel],
  );
  return entity.machine;
}

/**
 * Puts every entity of `machine` that was `failed` when the call began back to work (after
 * a fix to the machine is deployed), `batchSize` at a time, each batch one transaction
 * that wakes the dispatchers. One that fails again meanwhile is not taken a second time.
 * A row another session holds (an event being appended) is waited for, within the
 * session's lock_timeout. Resolves with how many were resumed.
 */
export async function resumeFailedEntities(
  pool: pg.Pool,
  options: { machine: string; notifyChannel: string; batchSize?: number },
): Promise<number> {
  const { machine, notifyChannel, batchSize = 1000 } = options;
  if (!Number.isInteger(batchSize) || batchSize < 1) {
    throw new StatehouseError('USAGE', `batchSize must be a whole number from 1; it is ${batchSize}`);
  }
  // ISO 8601 text, read back exactly whatever the session's DateStyle and TimeZone.
  const { rows: began } = await pool.query<{ at: string }>(`select to_json(now()) #>> '{}' as at`);
  let resumed = 0;
  for (;;) {
    // Failed ones of the machine through entities_by_status. Not SKIP LOCKED: a row held
    // for a moment would be left failed, and a short batch taken for the last.
    const { rows } = await pool.query<{ n: number }>(
      `with picked as (
         select entity_id from entities
         where machine = $1 and status = 'failed' and updated_at < $2::timestamptz
         limit $3
         for update
       ), resumed as (
         update entities e set ${RESUMED}
         from picked p
         where e.machine = $1 and e.entity_id = p.entity_id
         returning 1
       )
       select c.n, case when c.n > 0 then pg_notify($4, '')::text end as notified
       from (select count(*)::int as n from resumed) c`,
      [machine, began[0]!.at, batchSize, notifyChannel],
    );
    const n = rows[0]?.n ?? 0;
    resumed += n;
    // Until a batch finds none: one whose row changed while it waited drops out of its
    // batch, so a short batch does not mean the last.
    if (n === 0) return resumed;
  }
}

export interface EntitySummary {
  machine: string;
  entityId: string;
  status: string;
  state: unknown;
  machineVersion: number | null;
  pending: number;
  updatedAt: Date;
}

// The newest `$3` of each (machine, status) pair, each read from the front of
// entities_by_status, then merged: a bounded read however many entities there are, where
// one `order by updated_at` over the table would sort all of them. Without a machine
// filter the machines are found by skipping through the primary key, one probe each.
const LIST_ENTITIES_SQL = `
with recursive machines (machine) as (
  select coalesce($1::text, (select min(machine) from entities))
  union all
  select (select min(e.machine) from entities e where e.machine > m.machine)
  from machines m
  where $1::text is null and m.machine is not null
)
select x.* from machines m
cross join unnest($2::text[]) as s(status)
cross join lateral (
  select e.machine, e.entity_id as "entityId", e.status, e.state, e.machine_version as "machineVersion",
         e.last_version - e.applied_version as pending, e.updated_at as "updatedAt"
  from entities e
  where e.machine = m.machine and e.status = s.status
  order by e.updated_at desc
  limit $3
) x
order by x."updatedAt" desc
limit $3`;

/** Entities by machine and status, most recently changed first (on the entities_by_status index). */
export async function listEntities(
  pool: pg.Pool,
  filter: { machine?: string | undefined; status?: EntityStatus | undefined; limit?: number } = {},
): Promise<EntitySummary[]> {
  const { rows } = await pool.query<EntitySummary>(LIST_ENTITIES_SQL, [
    filter.machine ?? null,
    filter.status ? [filter.status] : ENTITY_STATUSES,
    filter.limit ?? 50,
  ]);
  return rows;
}
