import type pg from 'pg';
import { beginWith, preparedName } from '../db/index.ts';
import type { EntityRow, StepEvent } from './step.ts';

/**
 * Claims up to `$1` entities with unapplied events (FOR UPDATE SKIP LOCKED: one
 * transaction in the whole cluster holds an entity) and reads their next events, at most
 * `$3` each, in version order, in one round trip. The events come as one JSON array per
 * entity, which Postgres builds and Node parses natively (json, not jsonb: building
 * jsonb cost Postgres twice as much), with only the columns a step reads.
 */
const CLAIM_SQL = `
with claimed as (
  select machine, entity_id, machine_version, snapshot, applied_version, pending_since
  from entities
  where pending_since is not null and status <> 'failed' and applied_version < last_version
    and machine = any($2::text[])
  order by pending_since
  limit $1
  for update skip locked
)
select c.machine, c.entity_id as "entityId", c.machine_version as "machineVersion", c.snapshot,
       c.applied_version as "appliedVersion",
       (select coalesce(json_agg(json_build_array(e.position, e.version, e.type, e.schema_version, e.data)
               order by e.version), '[]'::json)
        from events e
        where e.machine = c.machine and e.entity_id = c.entity_id
          and e.version > c.applied_version and e.version <= c.applied_version + $3) as events
from claimed c
order by c.pending_since`;

/** An event as the claim reads it: position, version, type, schema version, data. */
type EventColumns = [number, number, string, number, unknown];

export interface ClaimedEntity {
  entity: EntityRow;
  events: StepEvent[];
}

/**
 * Begins the transaction that will save the entities, and claims them in it (one round
 * trip): the claim lasts until it ends.
 */
export async function claimEntities(
  client: pg.ClientBase,
  options: { limit: number; machines: readonly string[]; eventsPerEntity: number },
): Promise<ClaimedEntity[]> {
  const name = await preparedName(client, 'statehouse.claim-entities', ['entities', 'events']);
  const { rows } = await beginWith<EntityRow & { events: EventColumns[] }>(
    client,
    { name, text: CLAIM_SQL, types: ['int', 'text[]', 'int'] },
    [options.limit, options.machines, options.eventsPerEntity],
  );
  return rows.map(({ events, ...entity }) => ({
    entity,
    events: events.map(([position, version, type, schemaVersion, data]) => ({
      position,
      version,
      type,
      schemaVersion,
      data,
    })),
  }));
}
