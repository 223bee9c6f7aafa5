import type pg from 'pg';
import type { StoredEvent } from './types.ts';

/** Where a reader of the global log stands: the last event it has seen. */
export interface LogPosition {
  /** xid8 of the transaction that wrote the event, as a decimal string (it can exceed 2^53). */
  transactionId: string;
  position: number;
}

export const START_OF_LOG: LogPosition = Object.freeze({ transactionId: '0', position: 0 });

export interface LogPage {
  events: Array<StoredEvent & { transactionId: string }>;
  /** Pass it back as `after` to continue. Unchanged when nothing new was visible. */
  next: LogPosition;
}

/**
 * Reads every entity's events in one order that a late commit cannot break.
 *
 * `position` is taken from a sequence before commit, so a transaction that started first
 * can commit after a later one: a reader going by position alone would pass over its
 * events for good. Instead the log is read in (transaction id, position) order, and only
 * events of transactions older than the oldest one still running
 * (`pg_snapshot_xmin(pg_current_snapshot())`) are returned, so nothing can later appear
 * behind the reader. The cost: a long-running transaction holds the reader back until it
 * ends.
 */
export async function readGlobalLog(
  db: pg.Pool | pg.ClientBase,
  after: LogPosition = START_OF_LOG,
  limit = 1000,
): Promise<LogPage> {
  const { rows } = await db.query<StoredEvent & { transactionId: string }>(
    `select position, machine, entity_id as "entityId", version, type, schema_version as "schemaVersion",
            data, metadata, message_id as "messageId", source, subject, nats_stream as "natsStream",
            nats_seq as "natsSeq", published_at as "publishedAt", recorded_at as "recordedAt",
            transaction_id::text as "transactionId"
     from events
     where (transaction_id, position) > ($1::xid8, $2::bigint)
       and transaction_id < pg_snapshot_xmin(pg_current_snapshot())
     order by transaction_id, position
     limit $3`,
    [after.transactionId, after.position, limit],
  );
  const last = rows[rows.length - 1];
  return {
    events: rows,
    next: last ? { transactionId: last.transactionId, position: last.position } : after,
  };
}
