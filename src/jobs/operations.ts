import type pg from 'pg';
import { PgBoss } from 'pg-boss';
import { isLockTimeout, quoteIdent, withTransaction } from '../db/index.ts';
import { StatehouseError } from '../errors/index.ts';
import { appendCaused, isDuplicateMessageError } from '../store/index.ts';
import { succeededUnrecorded } from './dead-letters.ts';
import { HANDLER_NAME } from './handler.ts';
import { OutcomeRecorder, recordedOutcomeTypes } from './outcomes.ts';
import {
  dbOf,
  deadLetterQueueName,
  insertJobs,
  isDeadLetterQueue,
  type JobData,
  outcomeType,
  QUEUE_PREFIX,
  queueName,
  wakeWorkers,
} from './queues.ts';
import { reopenStep } from './saga.ts';

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
  /** Tries used, the first included (for a dead letter: of the job that failed). */
  attempts: number;
  /** Retries allowed after the first try; null for a dead letter. */
  retryLimit: number | null;
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
  /** `run` (a handler's run) or `compensate` (its undo). */
  kind?: JobData['kind'] | undefined;
  limit?: number | undefined;
}

export interface RerunOptions {
  /** Kept in the entity's history. */
  reason?: string;
  /** Run it even though its entity is done (its machine will ignore the outcome). */
  force?: boolean;
}

export interface OperationResult {
  /** The job acted on. */
  jobId: string;
  /** The job that now runs in its place (retry and redrive). */
  newJobId?: string;
  /** The event the entity got (cancel). */
  outcome?: string;
  machine: string;
  entityId: string;
  handler: string;
}

const JOB_COLUMNS = `id::text, name as queue, state::text, data,
  coalesce(source_retry_count, retry_count) as "retryCount", retry_limit as "retryLimit", created_on as "createdOn", completed_on as "completedOn",
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
  readonly #wakeChannel: string;
  readonly #ownsBoss: boolean;

  constructor(options: {
    pool: pg.Pool;
    boss: PgBoss;
    bossSchema: string;
    outcomes: OutcomeRecorder;
    notifyChannel: string;
    /** Where job inserts wake the workers (`jobsChannel`). */
    wakeChannel: string;
    ownsBoss?: boolean;
  }) {
    this.#pool = options.pool;
    this.#boss = options.boss;
    this.#schema = quoteIdent(options.bossSchema);
    this.#outcomes = options.outcomes;
    this.#notifyChannel = options.notifyChannel;
    this.#wakeChannel = options.wakeChannel;
    this.#ownsBoss = options.ownsBoss ?? false;
  }

  /** Operations without a running engine (the CLI): a pg-boss client that supervises nothing. */
  static async open(options: {
    databaseUrl: string;
    pool: pg.Pool;
    bossSchema: string;
    notifyChannel: string;
    wakeChannel: string;
  }): Promise<JobOperations> {
    const boss = new PgBoss({
      connectionString: options.databaseUrl,
      schema: options.bossSchema,
      supervise: false,
      schedule: false,
      // The engine owns pg-boss's schema; an operator's command never migrates it.
      migrate: false,
      createSchema: false,
      max: 2,
      application_name: 'statehouse-cli',
    });
    await boss.start();
    return new JobOperations({
      ...options,
      boss,
      // The one outcome an operation records is a cancel's failure, and a saga's undo cannot
      // be cancelled: no saga moves from here.
      outcomes: new OutcomeRecorder({
        notifyChannel: options.notifyChannel,
        canCompensate: () => false,
        enqueueCompensation: async () => {
          throw new StatehouseError('USAGE', 'an operation cannot start a compensation');
        },
      }),
      ownsBoss: true,
    });
  }

  async close(): Promise<void> {
    if (this.#ownsBoss) await this.#boss.stop({ graceful: false });
  }

  /**
   * Newest first. Reads pg-boss's job table, statehouse's queues only. The whole listing,
   * or a handler's, a kind's, or the dead letters, reads the newest jobs of each queue that
   * can match backwards on pg-boss's (name, created_on) index and merges them, instead of
   * sorting every job pg-boss keeps.
   */
  async list(filter: JobFilter = {}): Promise<JobSummary[]> {
    const { machine, entityId, handler, kind, state = '', limit = 100 } = filter;
    // A dot would make it name another queue (`ship.dead`) below; no handler has one.
    if (handler !== undefined && !HANDLER_NAME.test(handler)) {
      throw new StatehouseError(
        'USAGE',
        `"${handler}" is not a handler name (a letter, then letters, digits, _ and -)`,
      );
    }
    // A job's entity and machine are in no index, and a state other than dead letters is
    // rare among a queue's newest jobs: those filters read the matching jobs and sort them.
    if (entityId !== undefined || machine !== undefined || (state !== '' && state !== 'dead')) {
      const { rows } = await this.#pool.query<JobRow>(
        `select ${JOB_COLUMNS} from ${this.#schema}.job job
         where name = any(${this.#statehouseQueues('$1')})
           and ($2::text is null or data->>'machine' = $2)
           and ($3::text is null or data->>'entityId' = $3)
           and ($4::text is null or data->>'handler' = $4)
           and ($5::text is null or data->>'kind' = $5)
           and case $6::text
                 when 'dead' then name like '%.dead' and state = 'created'
                 when 'pending' then name not like '%.dead' and state in ('created', 'retry')
                 when '' then true
                 else name not like '%.dead' and state::text = $6 end
         order by job.created_on desc, job.id desc
         limit $7`,
        [`${QUEUE_PREFIX}%`, machine ?? null, entityId ?? null, handler ?? null, kind ?? null, state, limit],
      );
      return rows.map(summarize);
    }
    // Otherwise a queue's name says whose jobs it holds (`statehouse.<handler>[.compensate][.dead]`;
    // handler names have no dots and are never "compensate" or "dead"), so the handler and
    // kind filters pick queues, and each queue's jobs are read in created_on order.
    const { rows } = await this.#pool.query<JobRow>(
      `select j.* from ${this.#schema}.queue q
       cross join lateral (
         select ${JOB_COLUMNS} from ${this.#schema}.job jb
         -- A dead letter waits as 'created' until it is redriven, retried or expires.
         where jb.name = q.name and ($4::text = '' or jb.state = 'created')
         order by jb.created_on desc, jb.id desc
         limit $5
       ) j
       where q.name like $1
         and ($2::text is null or q.name = $6 || $2 or starts_with(q.name, $6 || $2 || '.'))
         and ($3::text is null or (split_part(q.name, '.', 3) = 'compensate') = ($3 = 'compensate'))
         and ($4::text = '' or q.name like '%.dead')
       -- Jobs inserted in one transaction share created_on: the id orders them alike each time.
       order by j."createdOn" desc, j.id::uuid desc
       limit $5`,
      [`${QUEUE_PREFIX}%`, handler ?? null, kind ?? null, state, limit, QUEUE_PREFIX],
    );
    return rows.map(summarize);
  }

  async get(id: string): Promise<JobSummary> {
    return summarize(await this.#find(this.#pool, id));
  }

  /**
   * Runs a job that failed for good (or was cancelled) again, as a new job with the same
   * data and idempotency key. Refused when its entity is done (a final state ignores the
   * outcome, while the side effect would still happen) unless `force`.
   */
  async retry(id: string, options: RerunOptions = {}): Promise<OperationResult> {
    return this.#retry(id, options).catch((error: unknown) => {
      // The NOWAIT below, still taken after withTransaction's tries.
      if ((error as { code?: unknown }).code === '55P03' && !isLockTimeout(error)) {
        throw new StatehouseError(
          'BUSY',
          'another command, or the dead-letter sweep, is working on the same job right now; try again in a moment',
          { cause: error, retryable: true },
        );
      }
      throw error;
    });
  }

  async #retry(id: string, options: RerunOptions): Promise<OperationResult> {
    return this.#inTransaction(async (client) => {
      const job = await this.#find(client, id, true);
      if (isDeadLetterQueue(job.queue)) {
        throw new StatehouseError(
          'JOB_STATE_INVALID',
          `job ${id} is a dead letter; redrive it with \`statehouse jobs redrive ${id}\``,
        );
      }
      if (job.state !== 'failed' && job.state !== 'cancelled') {
        throw new StatehouseError(
          'JOB_STATE_INVALID',
          `job ${id} is ${job.state}; only a failed or cancelled job can be retried${job.state === 'created' || job.state === 'retry' ? ' (a pending one can be cancelled)' : ''}`,
        );
      }
      // Its dead letter, held first: the dead-letter sweep then leaves it alone, or has
      // recorded its outcome already, which #rerun then sees. Not waited for: held by a
      // sweep right now, the transaction fails with 55P03 and runs again shortly.
      const deadLetter = [deadLetterQueueName(job.data.handler, job.data.kind), id];
      await client.query(
        `select 1 from ${this.#schema}.job where name = $1 and source_id = $2::uuid and state = 'created'
         for update nowait`,
        deadLetter,
      );
      const newJobId = await this.#rerun(client, job, id, options);
      // It would otherwise let the same work be redriven a second time.
      await client.query(
        `delete from ${this.#schema}.job where name = $1 and source_id = $2::uuid and state = 'created'`,
        deadLetter,
      );
      await this.#record(client, job.data, 'statehouse.job.retried', {
        jobId: id,
        newJobId,
        ...reason(options),
      });
      return { jobId: id, newJobId, ...owner(job.data) };
    });
  }

  /** Moves a dead letter back to its queue, where it runs again with the same idempotency key. */
  async redrive(id: string, options: RerunOptions = {}): Promise<OperationResult> {
    return this.#inTransaction(async (client) => {
      const job = await this.#find(client, id, true);
      if (!isDeadLetterQueue(job.queue) || job.state !== 'created' || !job.sourceId) {
        throw new StatehouseError(
          'JOB_STATE_INVALID',
          `job ${id} is not a waiting dead letter (it is ${job.state} in ${job.queue}); \`statehouse jobs list --state dead\` shows them`,
        );
      }
      if (succeededUnrecorded(job.output)) {
        // Running it again would repeat a side effect whose result is known.
        throw new StatehouseError(
          'JOB_STATE_INVALID',
          `dead letter ${id} carries the output of a run that succeeded but could not record it; the dead-letter sweep records it (every pass, until Postgres takes it), so there is nothing to run again`,
        );
      }
      const newJobId = await this.#rerun(
        client,
        { ...job, queue: queueName(job.data.handler, job.data.kind) },
        job.sourceId,
        options,
      );
      await client.query(`delete from ${this.#schema}.job where name = $1 and id = $2::uuid`, [
        job.queue,
        id,
      ]);
      await this.#record(client, job.data, 'statehouse.job.redriven', {
        jobId: id,
        failedJobId: job.sourceId,
        newJobId,
        ...reason(options),
      });
      return { jobId: id, newJobId, ...owner(job.data) };
    });
  }

  /**
   * Enqueues `job`'s work again in its queue and marks `originalId` (the job that failed)
   * as rerun, so neither it nor its dead letter can be run a second time.
   */
  async #rerun(
    client: pg.ClientBase,
    job: JobRow,
    originalId: string,
    options: RerunOptions,
  ): Promise<string> {
    const outcome = (await recordedOutcomeTypes(client, [originalId])).get(originalId);
    if (outcome === outcomeType(job.data, 'done')) {
      throw new StatehouseError(
        'JOB_STATE_INVALID',
        `job ${originalId} succeeded (its outcome ${outcome} is recorded; pg-boss failed it only after its claim lapsed); nothing to run again`,
      );
    }
    const { rows: original } = await client.query<{ output: { retriedAs?: unknown } | null }>(
      `select output from ${this.#schema}.job where name = $1 and id = $2::uuid for update`,
      [job.queue, originalId],
    );
    const retriedAs = original[0]?.output?.retriedAs;
    if (typeof retriedAs === 'string') {
      throw new StatehouseError(
        'JOB_STATE_INVALID',
        `job ${originalId} was already run again as job ${retriedAs}`,
      );
    }
    const { rows: entity } = await client.query<{ status: string; state: unknown }>(
      'select status, state from entities where machine = $1 and entity_id = $2 for update',
      [job.data.machine, job.data.entityId],
    );
    if (entity[0]?.status === 'done' && !options.force) {
      throw new StatehouseError(
        'JOB_STATE_INVALID',
        `${job.data.machine} ${job.data.entityId} is done (state ${JSON.stringify(entity[0].state)}): its machine would ignore the outcome, but ${job.data.handler} would still run; pass --force (force: true) to run it anyway`,
      );
    }
    if (job.data.kind === 'compensate' && job.data.saga) {
      await reopenStep(
        client,
        { machine: job.data.machine, entityId: job.data.entityId },
        job.data.saga.stepKey,
      );
    }
    const [newJobId] = await insertJobs(this.#boss, client, job.queue, [job.data]);
    await wakeWorkers(client, this.#wakeChannel, [job.queue]);
    // Kept, for the record, with a pointer that stops a second rerun of the same failure.
    await client.query(
      `update ${this.#schema}.job set output = coalesce(output, '{}'::jsonb) || jsonb_build_object('retriedAs', $3::text)
       where name = $1 and id = $2::uuid`,
      [job.queue, originalId, newJobId],
    );
    return newJobId!;
  }

  /**
   * Cancels a job that has not started; its entity gets `<handler>.failed` (or
   * `.compensationFailed` for an undo the machine ordered itself), code JOB_CANCELLED.
   */
  async cancel(id: string, options: { reason?: string } = {}): Promise<OperationResult> {
    return this.#inTransaction(async (client) => {
      const job = await this.#find(client, id, true);
      if (isDeadLetterQueue(job.queue) || (job.state !== 'created' && job.state !== 'retry')) {
        throw new StatehouseError(
          'JOB_STATE_INVALID',
          `job ${id} is ${isDeadLetterQueue(job.queue) ? 'a dead letter' : job.state}; only a job that has not started (created, or waiting to retry) can be cancelled`,
        );
      }
      if (job.data.saga) {
        throw new StatehouseError(
          'JOB_STATE_INVALID',
          `job ${id} undoes a step of ${job.data.machine} ${job.data.entityId}'s saga, which cannot finish without it; let it run (or fail and be retried)`,
        );
      }
      const recorded = (await recordedOutcomeTypes(client, [id])).get(id);
      if (recorded !== undefined) {
        throw new StatehouseError(
          'JOB_STATE_INVALID',
          `job ${id} already has its outcome (${recorded} is recorded; an attempt finished before its worker was lost), so it is not cancelled`,
        );
      }
      if (succeededUnrecorded(job.output)) {
        // Cancelling would tell the entity it failed while its side effect happened.
        throw new StatehouseError(
          'JOB_STATE_INVALID',
          `job ${id} already did its work (its last attempt succeeded, but the outcome could not be recorded); its next attempt runs under the same idempotency key and records it, so it is not cancelled`,
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
      return { jobId: id, outcome: outcomeType(job.data, 'failed'), ...owner(job.data) };
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
      `select ${JOB_COLUMNS} from ${this.#schema}.job
       where id = $1::uuid and name = any(${this.#statehouseQueues('$2')})${lock ? ' for update' : ''}`,
      [id, `${QUEUE_PREFIX}%`],
    );
    const row = rows[0];
    if (!row) {
      throw new StatehouseError(
        'JOB_NOT_FOUND',
        `no statehouse job has id ${id}; \`statehouse jobs list\` shows them (a dead letter is gone once redriven or retried; finished jobs once pg-boss's retention passes)`,
      );
    }
    return row;
  }

  /**
   * statehouse's queue names, as an array expression over pg-boss's queue table (`param`
   * holds the name pattern): its job table is keyed, and partitioned, by queue.
   */
  #statehouseQueues(param: string): string {
    return `array(select name from ${this.#schema}.queue where name like ${param})`;
  }

  async #record(client: pg.ClientBase, data: JobData, type: string, details: Record<string, unknown>) {
    await appendCaused(
      client,
      {
        machine: data.machine,
        entityId: data.entityId,
        type,
        data: { handler: data.handler, kind: data.kind, idempotencyKey: data.key, ...details },
        source: 'operator',
      },
      { notifyChannel: this.#notifyChannel },
    );
  }
}

const owner = (data: JobData) => ({ machine: data.machine, entityId: data.entityId, handler: data.handler });
const reason = (options: { reason?: string; force?: boolean }) => ({
  ...(options.reason ? { reason: options.reason } : {}),
  ...(options.force ? { forced: true } : {}),
});

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
    retryLimit: isDeadLetterQueue(row.queue) ? null : row.retryLimit,
    createdOn: row.createdOn,
    completedOn: row.completedOn,
    output: row.output,
    sourceId: row.sourceId,
  };
}
