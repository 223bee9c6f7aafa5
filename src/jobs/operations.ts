import { randomUUID } from 'node:crypto';
import type pg from 'pg';
import { PgBoss } from 'pg-boss';
import { quoteIdent, withTransaction } from '../db/index.ts';
import { StatehouseError } from '../errors/index.ts';
import { appendEvents, isDuplicateMessageError } from '../store/index.ts';
import { OutcomeRecorder } from './outcomes.ts';
import { dbOf, insertJobs, isDeadLetterQueue, type JobData, QUEUE_PREFIX } from './queues.ts';

export type JobState = 'created' | 'retry' | 'active' | 'completed' | 'cancelled' | 'failed';

/** A statehouse job as operators see it. Dead letters are the copies of jobs that failed for good. */
export interface JobSummary {
  id: string;
  queue: string;
  deadLetter: boolean;
  state: JobState;
  machine: string;
  entityId: string;
  handler: string;
  kind: JobData['kind'];
  key: string;
  /** Tries used, the first included. */
  attempts: number;
  retryLimit: number;
  createdOn: Date;
  completedOn: Date | null;
  output: unknown;
  /** For a dead letter: the job that failed. */
  sourceId: string | null;
}

export interface JobFilter {
  machine?: string | undefined;
  entityId?: string | undefined;
  handler?: string | undefined;
  /** `dead` lists dead letters; `pending` jobs not started yet (created or waiting to retry). */
  state?: JobState | 'dead' | 'pending' | undefined;
  limit?: number | undefined;
}

export interface OperationResult {
  /** The job acted on. */
  jobId: string;
  /** The job that now runs in its place (retry and redrive). */
  newJobId?: string;
  machine: string;
  entityId: string;
  handler: string;
}

const JOB_COLUMNS = `id::text, name as queue, state::text, data, retry_count as "retryCount",
  retry_limit as "retryLimit", created_on as "createdOn", completed_on as "completedOn",
  coalesce(output, source_output) as output,
  source_id::text as "sourceId"`;

interface JobRow {
  id: string;
  queue: string;
  state: JobState;
  data: JobData;
  retryCount: number;
  retryLimit: number;
  createdOn: Date;
  completedOn: Date | null;
  output: unknown;
  sourceId: string | null;
}

/**
 * What an operator does to jobs: retry one that failed for good, redrive a dead letter,
 * cancel one that has not started. Each is one transaction that also appends an event to
 * the entity's history (`statehouse.job.retried`, `.redriven`, `.cancelled`), so the
 * history says who changed what; a cancelled job also ends with its `<handler>.failed`.
 */
export class JobOperations {
  readonly #pool: pg.Pool;
  readonly #boss: PgBoss;
  readonly #schema: string;
  readonly #outcomes: OutcomeRecorder;
  readonly #notifyChannel: string;
  readonly #ownsBoss: boolean;

  constructor(options: {
    pool: pg.Pool;
    boss: PgBoss;
    bossSchema: string;
    outcomes: OutcomeRecorder;
    notifyChannel: string;
    ownsBoss?: boolean;
  }) {
    this.#pool = options.pool;
    this.#boss = options.boss;
    this.#schema = quoteIdent(options.bossSchema);
    this.#outcomes = options.outcomes;
    this.#notifyChannel = options.notifyChannel;
    this.#ownsBoss = options.ownsBoss ?? false;
  }

  /** Operations without a running engine (the CLI): a pg-boss client that supervises nothing. */
  static async open(options: {
    databaseUrl: string;
    pool: pg.Pool;
    bossSchema: string;
    notifyChannel: string;
  }): Promise<JobOperations> {
    const boss = new PgBoss({
      connectionString: options.databaseUrl,
      schema: options.bossSchema,
      supervise: false,
      schedule: false,
      max: 2,
      application_name: 'statehouse-cli',
    });
    await boss.start();
    return new JobOperations({
      ...options,
      boss,
      outcomes: new OutcomeRecorder(boss, options.notifyChannel),
      ownsBoss: true,
    });
  }

  async close(): Promise<void> {
    if (this.#ownsBoss) await this.#boss.stop({ graceful: false });
  }

  /** Newest first. */
  async list(filter: JobFilter = {}): Promise<JobSummary[]> {
    const { rows } = await this.#pool.query<JobRow>(
      `select ${JOB_COLUMNS} from ${this.#schema}.job
       where name like $1
         and ($2::text is null or data->>'machine' = $2)
         and ($3::text is null or data->>'entityId' = $3)
         and ($4::text is null or data->>'handler' = $4)
         and case $5::text
               when 'dead' then name like '%.dead' and state = 'created'
               when 'pending' then name not like '%.dead' and state in ('created', 'retry')
               when '' then true
               else name not like '%.dead' and state::text = $5 end
       order by created_on desc
       limit $6`,
      [
        `${QUEUE_PREFIX}%`,
        filter.machine ?? null,
        filter.entityId ?? null,
        filter.handler ?? null,
        filter.state ?? '',
        filter.limit ?? 100,
      ],
    );
    return rows.map(summarize);
  }

  async get(id: string): Promise<JobSummary> {
    return summarize(await this.#find(this.#pool, id));
  }

  /** Runs a job that failed for good again, as a new job with the same data and idempotency key. */
  async retry(id: string, options: { reason?: string } = {}): Promise<OperationResult> {
    return this.#inTransaction(async (client) => {
      const job = await this.#find(client, id, true);
      if (isDeadLetterQueue(job.queue)) {
        throw new StatehouseError(
          'JOB_STATE_INVALID',
          `job ${id} is a dead letter; redrive it with \`statehouse jobs redrive ${id}\``,
        );
      }
      if (job.state !== 'failed') {
        throw new StatehouseError(
          'JOB_STATE_INVALID',
          `job ${id} is ${job.state}; only a failed job can be retried${job.state === 'created' || job.state === 'retry' ? ' (a pending one can be cancelled)' : ''}`,
        );
      }
      const retriedAs = (job.output as { retriedAs?: unknown } | null)?.retriedAs;
      if (typeof retriedAs === 'string') {
        throw new StatehouseError('JOB_STATE_INVALID', `job ${id} was already retried as job ${retriedAs}`);
      }
      const [newJobId] = await insertJobs(this.#boss, client, job.queue, [job.data]);
      // Kept, for the record, with a pointer that stops a second retry of the same failure.
      await client.query(
        `update ${this.#schema}.job set output = coalesce(output, '{}'::jsonb) || jsonb_build_object('retriedAs', $3::text)
         where name = $1 and id = $2::uuid`,
        [job.queue, id, newJobId],
      );
      // Its dead letter would otherwise let the same work be redriven a second time.
      await client.query(
        `delete from ${this.#schema}.job where name = $1 and source_id = $2::uuid and state = 'created'`,
        [`${job.queue}.dead`, id],
      );
      await this.#reopenSaga(client, job.data);
      await this.#record(client, job.data, 'statehouse.job.retried', {
        jobId: id,
        newJobId,
        ...reason(options),
      });
      return { jobId: id, newJobId: newJobId!, ...owner(job.data) };
    });
  }

  /** Moves a dead letter back to its queue, where it runs again with the same idempotency key. */
  async redrive(id: string, options: { reason?: string } = {}): Promise<OperationResult> {
    return this.#inTransaction(async (client) => {
      const job = await this.#find(client, id, true);
      if (!isDeadLetterQueue(job.queue) || job.state !== 'created') {
        throw new StatehouseError(
          'JOB_STATE_INVALID',
          `job ${id} is not a waiting dead letter (it is ${job.state} in ${job.queue}); \`statehouse jobs list --state dead\` shows them`,
        );
      }
      const moved = await this.#boss.redrive(job.queue, { ids: [id], db: dbOf(client) });
      if (moved !== 1) {
        throw new StatehouseError(
          'JOB_STATE_INVALID',
          `dead letter ${id} could not be moved back to its queue`,
        );
      }
      const { rows } = await client.query<{ id: string }>(
        `select id::text from ${this.#schema}.job where name = $1 and data->>'key' = $2 and state = 'created'
         order by created_on desc limit 1`,
        [job.queue.slice(0, -'.dead'.length), job.data.key],
      );
      const newJobId = rows[0]?.id;
      if (newJobId && job.sourceId) {
        // The failed original now has a successor: retrying it as well would run the work twice.
        await client.query(
          `update ${this.#schema}.job set output = coalesce(output, '{}'::jsonb) || jsonb_build_object('retriedAs', $3::text)
           where name = $1 and id = $2::uuid`,
          [job.queue.slice(0, -'.dead'.length), job.sourceId, newJobId],
        );
      }
      await this.#reopenSaga(client, job.data);
      await this.#record(client, job.data, 'statehouse.job.redriven', {
        jobId: id,
        newJobId,
        ...reason(options),
      });
      return { jobId: id, ...(newJobId ? { newJobId } : {}), ...owner(job.data) };
    });
  }

  /** Cancels a job that has not started; its entity gets `<handler>.failed` (code JOB_CANCELLED). */
  async cancel(id: string, options: { reason?: string } = {}): Promise<OperationResult> {
    return this.#inTransaction(async (client) => {
      const job = await this.#find(client, id, true);
      if (isDeadLetterQueue(job.queue) || (job.state !== 'created' && job.state !== 'retry')) {
        throw new StatehouseError(
          'JOB_STATE_INVALID',
          `job ${id} is ${isDeadLetterQueue(job.queue) ? 'a dead letter' : job.state}; only a job that has not started (created, or waiting to retry) can be cancelled`,
        );
      }
      await this.#boss.cancel(job.queue, id, { db: dbOf(client) });
      await this.#record(client, job.data, 'statehouse.job.cancelled', { jobId: id, ...reason(options) });
      await this.#outcomes.record(client, [
        {
          jobId: id,
          data: job.data,
          ok: false,
          source: 'operator',
          payload: {
            name: 'JobCancelled',
            code: 'JOB_CANCELLED',
            message: `cancelled by an operator${options.reason ? `: ${options.reason}` : ''}`,
          },
        },
      ]);
      return { jobId: id, ...owner(job.data) };
    });
  }

  #inTransaction<T>(work: (client: pg.PoolClient) => Promise<T>): Promise<T> {
    return withTransaction(this.#pool, work, { alsoRetry: isDuplicateMessageError });
  }

  async #find(db: pg.Pool | pg.ClientBase, id: string, lock = false): Promise<JobRow> {
    if (!/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i.test(id)) {
      throw new StatehouseError(
        'USAGE',
        `"${id}" is not a job id (a UUID, as \`statehouse jobs list\` shows)`,
      );
    }
    const { rows } = await db.query<JobRow>(
      `select ${JOB_COLUMNS} from ${this.#schema}.job where id = $1::uuid and name like $2${lock ? ' for update' : ''}`,
      [id, `${QUEUE_PREFIX}%`],
    );
    const row = rows[0];
    if (!row) {
      throw new StatehouseError(
        'JOB_NOT_FOUND',
        `no statehouse job has id ${id}; \`statehouse jobs list\` shows them (completed jobs are deleted after pg-boss's retention)`,
      );
    }
    return row;
  }

  /** A compensation that runs again puts its saga back to compensating. */
  async #reopenSaga(client: pg.ClientBase, data: JobData): Promise<void> {
    if (data.kind !== 'compensate' || !data.saga) return;
    await client.query(
      `update saga_steps set status = 'compensating', updated_at = now() where step_key = $1`,
      [data.saga.stepKey],
    );
    await client.query(
      `update entities set saga_state = 'compensating' where machine = $1 and entity_id = $2`,
      [data.machine, data.entityId],
    );
  }

  async #record(client: pg.ClientBase, data: JobData, type: string, details: Record<string, unknown>) {
    await appendEvents(
      client,
      [
        {
          machine: data.machine,
          entityId: data.entityId,
          type,
          data: { handler: data.handler, kind: data.kind, idempotencyKey: data.key, ...details },
          messageId: `operator:${randomUUID()}`,
          source: 'operator',
        },
      ],
      { notifyChannel: this.#notifyChannel },
    );
  }
}

const owner = (data: JobData) => ({ machine: data.machine, entityId: data.entityId, handler: data.handler });
const reason = (options: { reason?: string }) => (options.reason ? { reason: options.reason } : {});

function summarize(row: JobRow): JobSummary {
  return {
    id: row.id,
    queue: row.queue,
    deadLetter: isDeadLetterQueue(row.queue),
    state: row.state,
    machine: row.data.machine,
    entityId: row.data.entityId,
    handler: row.data.handler,
    kind: row.data.kind,
    key: row.data.key,
    attempts: row.retryCount + 1,
    retryLimit: row.retryLimit,
    createdOn: row.createdOn,
    completedOn: row.completedOn,
    output: row.output,
    sourceId: row.sourceId,
  };
}
