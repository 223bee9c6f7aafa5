import type pg from 'pg';
import type { AppendResult, NewEvent } from './types.ts';

/**
 * Appends a batch in one statement: drops message ids already stored (or repeated within
 * the batch), gives each entity's new events consecutive versions in batch order, and
 * marks those entities pending for the dispatcher. Must run inside a transaction; the
 * entity rows it touches stay locked until that transaction ends, which is what keeps
 * concurrent appends to one entity from interleaving versions.
 */
const APPEND_SQL = `
with input as (
  select * from unnest(
    $1::text[], $2::text[], $3::text[], $4::text[], $5::int[], $6::jsonb[], $7::jsonb[],
    $8::text[], $9::text[], $10::text[], $11::bigint[], $12::timestamptz[]
  ) with ordinality as t(message_id, machine, entity_id, type, schema_version, data, metadata,
                         source, subject, nats_stream, nats_seq, published_at, ord)
),
fresh as (
  select distinct on (i.message_id) i.*
  from input i
  where not exists (select 1 from events e where e.message_id = i.message_id)
  order by i.message_id, i.ord
),
counts as (
  select machine, entity_id, count(*)::int as n from fresh group by machine, entity_id
),
bumped as (
  insert into entities as en (machine, entity_id, last_version, pending_since)
  select machine, entity_id, n, now() from counts order by machine, entity_id
  on conflict (machine, entity_id) do update
    set last_version = en.last_version + excluded.last_version,
        pending_since = case when en.applied_version < en.last_version then en.pending_since else now() end
  returning en.machine, en.entity_id, en.last_version
)
insert into events (message_id, machine, entity_id, version, type, schema_version, data, metadata,
                    source, subject, nats_stream, nats_seq, published_at)
select f.message_id, f.machine, f.entity_id,
       b.last_version - c.n + row_number() over (partition by f.machine, f.entity_id order by f.ord)::int,
       f.type, f.schema_version, f.data, f.metadata, f.source, f.subject, f.nats_stream, f.nats_seq, f.published_at
from fresh f
join counts c on c.machine = f.machine and c.entity_id = f.entity_id
join bumped b on b.machine = f.machine and b.entity_id = f.entity_id
order by f.ord
returning position, machine, entity_id as "entityId", version, message_id as "messageId"`;

export async function appendEvents(
  client: pg.ClientBase,
  events: readonly NewEvent[],
  options: { notifyChannel?: string } = {},
): Promise<AppendResult> {
  if (events.length === 0) return { appended: [], duplicates: 0 };
  const { rows } = await client.query(APPEND_SQL, [
    events.map((e) => e.messageId),
    events.map((e) => e.machine),
    events.map((e) => e.entityId),
    events.map((e) => e.type),
    events.map((e) => e.schemaVersion ?? 1),
    events.map((e) => JSON.stringify(e.data ?? null)),
    events.map((e) => JSON.stringify(e.metadata ?? {})),
    events.map((e) => e.source),
    events.map((e) => e.subject ?? null),
    events.map((e) => e.natsStream ?? null),
    events.map((e) => e.natsSeq ?? null),
    events.map((e) => e.publishedAt ?? null),
  ]);
  if (rows.length > 0 && options.notifyChannel) {
    // Delivered at commit, once per transaction: wakes the dispatchers.
    await client.query('select pg_notify($1, $2)', [options.notifyChannel, '']);
  }
  return { appended: rows, duplicates: events.length - rows.length };
}

/** A unique violation on the message id: two writers raced to store the same message. */
export function isDuplicateMessageError(error: unknown): boolean {
  const e = error as { code?: string; constraint?: string } | null;
  return e?.code === '23505' && e.constraint === 'events_message_id_key';
}
