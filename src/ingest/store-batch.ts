import type pg from 'pg';
import { preparedName } from '../db/index.ts';
import { appendCtes } from '../store/index.ts';

/**
 * One ingest batch in one statement: advance the stream's checkpoint from the value the
 * leader last wrote, append the events only if that worked (the checkpoint is the
 * leader's fencing token), and queue the NOTIFY that wakes the dispatchers. One
 * statement is one round trip, and in autocommit its own transaction.
 */
const STORE_BATCH_SQL = `
with advanced as (
  update ingest_checkpoints set last_seq = $4, updated_at = now()
  where stream = $2 and last_seq = $3
  returning 1
),
${appendCtes('exists (select 1 from advanced)')}
select (select count(*) from advanced)::int as advanced,
       -- Delivered at commit, once per transaction.
       case when exists (select 1 from appended) then pg_notify($5, '')::text end as notified`;

export interface StoreBatchInput {
  /** The events, as `encodeEvents` makes them. */
  encoded: string;
  stream: string;
  /** The checkpoint this leader last wrote or read. */
  checkpoint: number;
  /** The new checkpoint: the highest stream sequence of the batch. */
  last: number;
  notifyChannel: string;
}

/** False when the checkpoint had moved: another leader took over, nothing was appended. */
export async function storeBatch(client: pg.ClientBase, input: StoreBatchInput): Promise<boolean> {
  const { rows } = await client.query<{ advanced: number }>({
    // Prepared once `events` has grown (see preparedName).
    name: await preparedName(client, 'statehouse.ingest-batch', ['events']),
    text: STORE_BATCH_SQL,
    values: [input.encoded, input.stream, input.checkpoint, input.last, input.notifyChannel],
  });
  return rows[0]?.advanced === 1;
}
