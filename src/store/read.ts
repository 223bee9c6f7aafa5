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

function entityKey(machine: string, entityId: string): string {
  return `${machine}\u0000${entityId}`;
}
