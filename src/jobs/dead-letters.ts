import type pg from 'pg';
import { quoteIdent, withTransaction } from '../db/index.ts';
import { isDuplicateMessageError } from '../store/index.ts';
import type { JobOutcome, OutcomeRecorder } from './outcomes.ts';
import type { JobData } from './queues.ts';

/**
 * Dead letters whose failure never became an event: the worker died on the job's last
 * attempt (pg-boss expired it and moved it here), or recording the outcome failed. The
 * entity would wait for an outcome forever; this records `<handler>.failed` for them.
 * Every engine process may sweep: the outcome's message id makes a second record a no-op.
 */
export async function sweepDeadLetters(
  pool: pg.Pool,
  bossSchema: string,
  deadLetterQueues: readonly string[],
  outcomes: OutcomeRecorder,
  limit = 500,
): Promise<number> {
  if (deadLetterQueues.length === 0) return 0;
  const { rows } = await pool.query<{ sourceId: string; data: JobData; sourceOutput: unknown }>(
    `select d.source_id::text as "sourceId", d.data, d.source_output as "sourceOutput"
     from ${quoteIdent(bossSchema)}.job d
     where d.name = any($1::text[]) and d.state = 'created' and d.source_id is not null
       and not exists (select 1 from events e where e.message_id = 'outcome:' || d.source_id::text)
     order by d.created_on
     limit $2`,
    [deadLetterQueues, limit],
  );
  if (rows.length === 0) return 0;
  const settled: JobOutcome[] = rows.map((row) => ({
    jobId: row.sourceId,
    data: row.data,
    ok: false,
    payload: describeLoss(row.sourceOutput),
  }));
  await withTransaction(pool, (client) => outcomes.record(client, settled), {
    alsoRetry: isDuplicateMessageError,
  });
  return rows.length;
}

function describeLoss(output: unknown): Record<string, unknown> {
  const known = output as { message?: unknown; name?: unknown } | null;
  if (known && typeof known.message === 'string') return { ...known };
  return {
    name: 'JobLost',
    code: 'JOB_LOST',
    message:
      'the job stopped without an outcome on its last attempt (its worker died or it outlived its expiry)',
    detail: output ?? null,
  };
}
