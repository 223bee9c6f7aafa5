import { randomUUID } from 'node:crypto';
import type pg from 'pg';
import type { PgBoss } from 'pg-boss';
import type { JobEffect } from '../workflows/index.ts';

/** What a handler job carries: enough to run the handler and to route its outcome back. */
export interface JobData {
  machine: string;
  entityId: string;
  handler: string;
  kind: JobEffect['kind'];
  input: unknown;
  /** The idempotency key: the same for every attempt, retry and redrive of this piece of work. */
  key: string;
  causedBy: { position: number; version: number; type: string };
  /** A run that becomes a saga step once it completes. */
  compensable?: boolean;
  /** A compensation the engine runs for a saga step (the step's run key). */
  saga?: { stepKey: string };
  /**
   * Retries after the first try. Written into pg-boss's row too when the job is inserted, so
   * the worker knows a job's last attempt without fetching pg-boss's metadata.
   */
  retryLimit?: number;
}

export const QUEUE_PREFIX = 'statehouse.';

export const queueName = (handler: string, kind: JobEffect['kind'] = 'run') =>
  kind === 'run' ? `${QUEUE_PREFIX}${handler}` : `${QUEUE_PREFIX}${handler}.compensate`;
export const deadLetterQueueName = (handler: string, kind: JobEffect['kind'] = 'run') =>
  `${queueName(handler, kind)}.dead`;
export const isDeadLetterQueue = (queue: string) => queue.endsWith('.dead');

/** The events a job's outcome becomes, by kind. */
export function outcomeType(data: Pick<JobData, 'handler' | 'kind'>, outcome: 'done' | 'failed'): string {
  if (data.kind === 'run') return `${data.handler}.${outcome}`;
  return `${data.handler}.${outcome === 'done' ? 'compensated' : 'compensationFailed'}`;
}

/**
 * The event id of a job's outcome. Per job, not per idempotency key: the attempts of one
 * job (retries, a rerun after its worker died) share it, so the first outcome wins; a
 * job an operator retries or redrives is a new job whose outcome counts again.
 */
export const OUTCOME_ID_PREFIX = 'outcome:';
export const outcomeMessageId = (jobId: string) => `${OUTCOME_ID_PREFIX}${jobId}`;

/**
 * Inserts jobs through `client`, so they commit or roll back with the caller's transaction.
 * Follow with `wakeWorkers` for the queues written to.
 */
export async function insertJobs(
  boss: PgBoss,
  client: pg.ClientBase,
  queue: string,
  jobs: readonly JobData[],
): Promise<string[]> {
  if (jobs.length === 0) return [];
  const rows = jobs.map((data) => ({
    id: randomUUID(),
    data,
    ...(data.retryLimit === undefined ? {} : { retryLimit: data.retryLimit }),
  }));
  await boss.insert(queue, rows, { db: dbOf(client) });
  return rows.map((row) => row.id);
}

/**
 * Queues one NOTIFY on `wakeChannel` per queue, in one statement: at commit each wakes one
 * idle worker of that queue in each engine process (see JobRunner), not every worker as
 * pg-boss's own queue notification would.
 */
export async function wakeWorkers(
  client: pg.ClientBase,
  wakeChannel: string,
  queues: readonly string[],
): Promise<void> {
  if (queues.length === 0) return;
  await client.query('select pg_notify($1, q) from unnest($2::text[]) as q', [wakeChannel, queues]);
}

/** pg-boss's connection option for running its statements on our transaction's client. */
export const dbOf = (client: pg.ClientBase) => ({
  executeSql: (text: string, values?: unknown[]) => client.query(text, values),
});
