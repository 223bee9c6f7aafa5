// The tables both hand-written ingest baselines store into: what a competent engineer
// builds to move JetStream messages into Postgres durably, with dedupe, and keep a
// per-entity marker — the same job statehouse's ingest does, minus everything else.
//
//  * events: one row per message, unique on the message id (Nats-Msg-Id), data as jsonb.
//  * entities: one row per entity, upserted with the highest stream sequence and a count,
//    in the same statement (so the same transaction) as the events.
//
// Differences from statehouse's own event store, on purpose: no per-entity version
// numbers, no (machine, entity, version) unique index, no transaction-id index, no
// checkpoint row, no NOTIFY, no envelope parsing beyond JSON.parse. That is the floor a
// baseline sets: the ratio says what statehouse's extra guarantees cost.
import type pg from 'pg';
import { type EventRow, rowValues } from './rows.ts';

export const BASELINE_SCHEMA = 'baseline';

export async function createBaselineTables(client: pg.ClientBase): Promise<void> {
  await client.query(`
    create schema ${BASELINE_SCHEMA};
    create table ${BASELINE_SCHEMA}.events (
      position     bigint generated always as identity primary key,
      message_id   text        not null unique,
      entity_id    text        not null,
      type         text        not null,
      data         jsonb       not null,
      subject      text        not null,
      nats_seq     bigint      not null,
      published_at timestamptz not null,
      recorded_at  timestamptz not null default now()
    );
    create table ${BASELINE_SCHEMA}.entities (
      entity_id  text        primary key,
      last_seq   bigint      not null,
      events     integer     not null,
      updated_at timestamptz not null default now()
    );`);
}

/**
 * Many messages in one statement (so one transaction): the rows `source` selects as events,
 * known message ids skipped, then the entity upsert of what was new.
 */
const insertBatch = (source: string) => `
with ins as (
  insert into ${BASELINE_SCHEMA}.events (message_id, entity_id, type, data, subject, nats_seq, published_at)
  ${source}
  on conflict (message_id) do nothing
  returning entity_id, nats_seq
)
insert into ${BASELINE_SCHEMA}.entities as en (entity_id, last_seq, events)
select entity_id, max(nats_seq), count(*) from ins group by entity_id
on conflict (entity_id) do update
  set last_seq = greatest(en.last_seq, excluded.last_seq),
      events = en.events + excluded.events,
      updated_at = now()`;

/** A batch as one array per column. */
export const INSERT_BATCH_SQL = insertBatch(
  'select * from unnest($1::text[], $2::text[], $3::text[], $4::jsonb[], $5::text[], $6::bigint[], $7::timestamptz[])',
);

/**
 * The same, with the batch as one JSON array of positional row arrays: no per-column array
 * literals to build, and no key repeated per row for Postgres to parse.
 */
export const INSERT_JSON_BATCH_SQL = insertBatch(
  `select r ->> 0, r ->> 1, r ->> 2, r -> 3, r ->> 4, (r ->> 5)::bigint, (r ->> 6)::timestamptz
   from jsonb_array_elements($1::jsonb) as r`,
);

/** One message in one statement. */
export const INSERT_ONE_SQL = `
with ins as (
  insert into ${BASELINE_SCHEMA}.events (message_id, entity_id, type, data, subject, nats_seq, published_at)
  values ($1, $2, $3, $4, $5, $6, $7)
  on conflict (message_id) do nothing
  returning entity_id, nats_seq
)
insert into ${BASELINE_SCHEMA}.entities as en (entity_id, last_seq, events)
select entity_id, nats_seq, 1 from ins
on conflict (entity_id) do update
  set last_seq = greatest(en.last_seq, excluded.last_seq),
      events = en.events + 1,
      updated_at = now()`;

export async function countBaselineEvents(client: pg.ClientBase): Promise<number> {
  const { rows } = await client.query<{ n: number }>(
    `select count(*)::int as n from ${BASELINE_SCHEMA}.events`,
  );
  return rows[0]?.n ?? 0;
}

/** A batch for INSERT_BATCH_SQL: one array parameter per column. */
export function arrayQuery(rows: EventRow[]): pg.QueryConfig {
  const columns: unknown[][] = [[], [], [], [], [], [], []];
  for (const row of rows) {
    const values = rowValues(row);
    for (let i = 0; i < 7; i++) columns[i]!.push(values[i]);
  }
  return { name: 'store-batch-arrays', text: INSERT_BATCH_SQL, values: columns };
}

/** A batch for INSERT_JSON_BATCH_SQL: one JSON document. */
export function jsonQuery(rows: EventRow[]): pg.QueryConfig {
  // Positional arrays, the time as text: the cheapest document to build, send and parse
  // (as statehouse's encodeEvents).
  const doc = rows.map(([id, entityId, type, data, subject, seq, at]) => [
    id,
    entityId,
    type,
    data,
    subject,
    seq,
    at.toISOString(),
  ]);
  return { name: 'store-batch-json', text: INSERT_JSON_BATCH_SQL, values: [JSON.stringify(doc)] };
}
