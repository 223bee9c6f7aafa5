import type pg from 'pg';
import type { StoredEvent } from './types.ts';

function eventColumns(alias: string): string {
  const a = `${alias}.`;
  return `${a}position, ${a}machine, ${a}entity_id as "entityId", ${a}version, ${a}type,
    ${a}schema_version as "schemaVersion", ${a}data, ${a}metadata, ${a}message_id as "messageId", ${a}source,
    ${a}subject, ${a}nats_stream as "natsStream", ${a}nats_seq as "natsSeq", ${a}published_at as "publishedAt",
    ${a}recorded_at as "recordedAt"`;
}

/** One entity's events in version order, from a version on (exclusive). */
export async function readStream(
  db: pg.Pool | pg.ClientBase,
  machine: string,
  entityId: string,
  options: { afterVersion?: number; limit?: number } = {},
): Promise<StoredEvent[]> {
  const { rows } = await db.query<StoredEvent>(
    `select ${eventColumns('e')} from events e
     where machine = $1 and entity_id = $2 and version > $3
     order by version limit $4`,
    [machine, entityId, options.afterVersion ?? 0, options.limit ?? 10_000],
  );
  return rows;
}

/**
 * The unapplied events of many entities at once, grouped per entity in version order,
 * at most `perEntity` each: a long backlog is worked off over several steps.
 */
export async function readPendingEvents(
  client: pg.ClientBase,
  entities: ReadonlyArray<{ machine: string; entityId: string; appliedVersion: number }>,
  perEntity: number,
): Promise<Map<string, StoredEvent[]>> {
  const { rows } = await client.query<StoredEvent>(
    `select ${eventColumns('e')}
     from unnest($1::text[], $2::text[], $3::int[]) as p(machine, entity_id, applied)
     join events e on e.machine = p.machine and e.entity_id = p.entity_id
      and e.version > p.applied and e.version <= p.applied + $4
     order by e.machine, e.entity_id, e.version`,
    [
      entities.map((e) => e.machine),
      entities.map((e) => e.entityId),
      entities.map((e) => e.appliedVersion),
      perEntity,
    ],
  );
  return groupByEntity(rows);
}

/** Rows grouped by their entity, each group in the rows' order. */
export function groupByEntity<T extends { machine: string; entityId: string }>(
  rows: readonly T[],
): Map<string, T[]> {
  const byEntity = new Map<string, T[]>();
  for (const row of rows) {
    const key = entityKey(row.machine, row.entityId);
    const list = byEntity.get(key);
    if (list) list.push(row);
    else byEntity.set(key, [row]);
  }
  return byEntity;
}

export function entityKey(machine: string, entityId: string): string {
  return `${machine}\u0000${entityId}`;
}
