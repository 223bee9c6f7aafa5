import type pg from 'pg';

export interface OutboxEntry {
  machine: string;
  entityId: string;
  subject: string;
  type: string;
  data: unknown;
  headers?: Record<string, string>;
}

/** Writes emitted events through the caller's transaction; the relay is woken at commit. */
export async function writeOutbox(
  client: pg.ClientBase,
  entries: readonly OutboxEntry[],
  notifyChannel: string,
): Promise<void> {
  if (entries.length === 0) return;
  // The NOTIFY rides in the same statement (one round trip): delivered at commit.
  await client.query(
    `with inserted as (
       insert into outbox (machine, entity_id, subject, type, data, headers)
       select * from unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::jsonb[], $6::jsonb[])
     )
     select pg_notify($7, '')::text`,
    [
      entries.map((e) => e.machine),
      entries.map((e) => e.entityId),
      entries.map((e) => e.subject),
      entries.map((e) => e.type),
      entries.map((e) => JSON.stringify(e.data ?? null)),
      entries.map((e) => JSON.stringify(e.headers ?? {})),
      notifyChannel,
    ],
  );
}
