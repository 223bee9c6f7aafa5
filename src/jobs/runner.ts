import type pg from 'pg';
import type { Job, JobResult } from 'pg-boss';
import { PgBoss } from 'pg-boss';
import { z } from 'zod';
import type { EffectSink, PlannedJob } from '../actors/index.ts';
import { Listener, withTransaction } from '../db/index.ts';
import { describeError, StatehouseError } from '../errors/index.ts';
import { storableJson } from '../shared/json.ts';
import type { Logger } from '../shared/logger.ts';
import { PollingLoop } from '../shared/polling-loop.ts';
import { isDuplicateMessageError } from '../store/index.ts';
import type { JobEffect } from '../workflows/index.ts';
import { deadLetterSweepRounds, unrecordedOutput } from './dead-letters.ts';
import type { Handler, HandlerContext } from './handler.ts';
import { type JobOutcome, OutcomeRecorder, recordedOutcomeTypes } from './outcomes.ts';
import {
  dbOf,
  deadLetterQueueName,
  insertJobs,
  type JobData,
  outcomeType,
  queueName,
  wakeWorkers,
} from './queues.ts';
import { resumeStepsMissingHandlers, startCompensation } from './saga.ts';

export interface JobRunnerOptions {
  databaseUrl: string;
  pool: pg.Pool;
  bossSchema: string;
  handlers: readonly Handler<never, unknown>[];
  concurrency: number;
  batchSize: number;
  pollIntervalSeconds: number;
  /** How often pg-boss looks for jobs whose worker died (they expire and are retried). */
  superviseIntervalSeconds: number;
  /** How often dead letters whose outcome was never recorded (the worker died on the last attempt) are settled. */
  deadLetterSweepSeconds: number;
  /** Where job inserts name their queue (`jobsChannel`); this process wakes one idle worker of it. */
  wakeChannel: string;
  /** The dispatcher's channel: an outcome is a new event for the entity. */
  notifyChannel: string;
  log: Logger;
}

/** One kind of work a queue does: a handler's run, or its compensation. */
interface Task {
  handler: Handler<never, unknown>;
  kind: JobEffect['kind'];
  queue: string;
  input: z.ZodType;
  execute: (input: never, ctx: HandlerContext) => Promise<unknown>;
}

const compensationInput = z.object({ input: z.unknown(), result: z.unknown() });

function tasksOf(handler: Handler<never, unknown>): Task[] {
  const tasks: Task[] = [
    {
      handler,
      kind: 'run',
      queue: queueName(handler.name),
      input: handler.input,
      execute: handler.run,
    },
  ];
  const undo = handler.compensate;
  if (undo) {
    tasks.push({
      handler,
      kind: 'compensate',
      queue: queueName(handler.name, 'compensate'),
      // The step's own input schema still applies to what is being undone.
      input: compensationInput.extend({ input: handler.input }),
      execute: (async (step: { input: never; result: unknown }, ctx: HandlerContext) => {
        await undo(step.input, step.result, ctx);
        return null;
      }) as Task['execute'],
    });
  }
  return tasks;
}

/** pg-boss marks a job expired this long after our own timeout should have stopped it. */
const EXPIRY_MARGIN_SECONDS = 10;

/**
 * How a job's run ended, before it is recorded; `recorded` when its outcome already was (an
 * earlier attempt's), so it is only settled with pg-boss.
 */
type Settled = { recorded?: true } & (
  | { job: Job<JobData>; ok: true; output: unknown }
  | {
      job: Job<JobData>;
      ok: false;
      error: Record<string, unknown>;
      final: boolean;
      retryable: boolean;
    }
);

/**
 * Runs handlers as pg-boss jobs and turns each job's outcome into the entity's next
 * event. Also the dispatcher's effect sink: jobs are inserted through the dispatcher's
 * own transaction, so a state change and the work it asks for commit together.
 */
export class JobRunner implements EffectSink {
  readonly #options: JobRunnerOptions;
  readonly #tasks: Map<string, Task>;
  readonly #boss: PgBoss;
  readonly #outcomes: OutcomeRecorder;
  readonly #shutdown = new AbortController();
  /** Each queue's fetch loops (pg-boss worker ids) and whether each is running a batch. */
  readonly #loops = new Map<string, Array<{ id: string; busy: boolean }>>();
  #wakeListener: Listener | undefined;
  #sweep: PollingLoop | undefined;
  #started = false;

  constructor(options: JobRunnerOptions) {
    this.#options = options;
    this.#tasks = new Map(options.handlers.flatMap(tasksOf).map((task) => [task.queue, task]));
    this.#boss = new PgBoss({
      connectionString: options.databaseUrl,
      schema: options.bossSchema,
      useListenNotify: true,
      max: Math.max(4, options.concurrency + 2),
      application_name: 'statehouse-jobs',
      superviseIntervalSeconds: options.superviseIntervalSeconds,
      // pg-boss expires timed-out jobs in its monitor pass, not only in supervise.
      monitorIntervalSeconds: options.superviseIntervalSeconds,
    });
    this.#outcomes = new OutcomeRecorder({
      notifyChannel: options.notifyChannel,
      canCompensate: (handler) => this.#tasks.has(queueName(handler, 'compensate')),
      enqueueCompensation: (client, data) => this.#insert(client, [data]),
    });
    this.#boss.on('error', (error: unknown) => options.log.error({ err: error }, 'pg-boss error'));
  }

  get boss(): PgBoss {
    return this.#boss;
  }

  /** Records job outcomes as events; also what the operations use. */
  get outcomes(): OutcomeRecorder {
    return this.#outcomes;
  }

  accepts(effect: JobEffect): boolean {
    if (effect.compensable && !this.#tasks.has(queueName(effect.handler, 'compensate'))) return false;
    return this.#tasks.has(queueName(effect.handler, effect.kind));
  }

  /** Starts pg-boss and makes sure every handler's queue and dead-letter queue exist with its policy. */
  async install(): Promise<void> {
    if (this.#started) return;
    await this.#boss.start();
    this.#started = true;
    for (const { handler, queue, kind } of this.#tasks.values()) {
      const policy = {
        retryLimit: handler.retry.limit,
        retryDelay: handler.retry.delaySeconds,
        retryBackoff: handler.retry.backoff,
        // pg-boss refuses a maximum delay without backoff (and the default policy always has one).
        ...(handler.retry.backoff && handler.retry.maxDelaySeconds
          ? { retryDelayMax: handler.retry.maxDelaySeconds }
          : {}),
        expireInSeconds: handler.timeoutSeconds + EXPIRY_MARGIN_SECONDS,
        deadLetter: deadLetterQueueName(handler.name, kind),
        // pg-boss's own notification wakes every worker of the queue in every process, and
        // all but one fetch nothing; inserts notify `wakeChannel` instead (see #wake).
        notify: false,
      };
      await this.#ensureQueue(deadLetterQueueName(handler.name, kind), { notify: false });
      await this.#ensureQueue(queue, policy);
    }
  }

  /** Starts the workers. */
  async start(): Promise<void> {
    await this.install();
    const { batchSize, concurrency, pollIntervalSeconds, databaseUrl, wakeChannel, log } = this.#options;
    for (const task of this.#tasks.values()) {
      // One pg-boss worker per loop, so that a wake-up can go to one idle loop.
      const loops: Array<{ id: string; busy: boolean }> = [];
      for (let i = 0; i < concurrency; i++) {
        const loop = { id: '', busy: false };
        loop.id = await this.#boss.work(
          task.queue,
          {
            batchSize,
            localConcurrency: 1,
            perJobResults: true,
            // A retry comes due silently (no insert, no wake-up): the poll finds it.
            pollingIntervalSeconds: pollIntervalSeconds,
            notifyPollingIntervalSeconds: pollIntervalSeconds,
            burstWhenBatchFull: batchSize > 1,
          } as const,
          async (jobs: Job<JobData>[]) => {
            loop.busy = true;
            try {
              return await this.#runBatch(task, jobs);
            } finally {
              loop.busy = false;
            }
          },
        );
        loops.push(loop);
      }
      this.#loops.set(task.queue, loops);
    }
    this.#wakeListener = new Listener(databaseUrl, wakeChannel, (queue) => this.#wake(queue), log);
    this.#wakeListener.start();
    await this.#resumeStalledSagas();
    this.#sweep = this.#sweepLoop();
    this.#sweep.start();
  }

  /**
   * New jobs in `queue` (every queue when unknown, after the listener reconnects): one idle
   * loop fetches them now. With none idle, every loop fetches again as soon as its batch is
   * done, since there is a backlog.
   */
  #wake(queue: string | undefined): void {
    const queues = queue === undefined ? [...this.#loops.keys()] : [queue];
    for (const name of queues) {
      const loops = this.#loops.get(name);
      if (!loops) continue;
      const idle = loops.find((loop) => !loop.busy);
      if (idle) this.#boss.notifyWorker(idle.id);
      else for (const loop of loops) this.#boss.notifyWorker(loop.id);
    }
  }

  /** Resumes sagas that stopped because no engine had a compensation this one has. */
  async #resumeStalledSagas(): Promise<void> {
    const { pool, log } = this.#options;
    const undoable = [...this.#tasks.values()]
      .filter((t) => t.kind === 'compensate')
      .map((t) => t.handler.name);
    try {
      const resumed = await withTransaction(pool, (client) =>
        resumeStepsMissingHandlers(client, undoable, this.#outcomes.saga),
      );
      if (resumed > 0) log.warn({ resumed }, 'resumed sagas stopped at a compensation no engine had');
    } catch (error) {
      // Not a reason to refuse to start: the next start tries again.
      log.error({ err: error }, 'could not resume sagas stopped at a missing compensation');
    }
  }

  /** The dead-letter sweep, every `deadLetterSweepSeconds`. */
  #sweepLoop(): PollingLoop {
    const { deadLetterSweepSeconds, log, pool, bossSchema, databaseUrl } = this.#options;
    const queues = [...this.#tasks.values()].map((task) => deadLetterQueueName(task.handler.name, task.kind));
    return new PollingLoop({
      name: 'dead-letter sweep',
      databaseUrl,
      pollIntervalMs: deadLetterSweepSeconds * 1000,
      log,
      round: deadLetterSweepRounds(pool, bossSchema, queues, this.#outcomes, log),
    });
  }

  /** Stops taking jobs, aborts running handlers' signals after `graceMs`, and waits for them. */
  async stop(graceMs = 10_000): Promise<void> {
    if (!this.#started) return;
    this.#started = false;
    await this.#sweep?.stop();
    this.#sweep = undefined;
    await this.#wakeListener?.stop();
    this.#wakeListener = undefined;
    this.#loops.clear();
    const abort = setTimeout(
      () => this.#shutdown.abort(new StatehouseError('SHUTTING_DOWN', 'engine is stopping')),
      graceMs,
    );
    try {
      await this.#boss.stop({ graceful: true, timeout: graceMs + 5000 });
    } finally {
      clearTimeout(abort);
    }
  }

  async enqueue(client: pg.ClientBase, effects: readonly PlannedJob[]): Promise<void> {
    const jobs: JobData[] = [];
    for (const { effect, key, causedBy, machine, entityId } of effects) {
      const cause = { position: causedBy.position, version: causedBy.version, type: causedBy.type };
      if (effect.kind === 'compensate-completed') {
        await startCompensation(client, { machine, entityId }, cause, this.#outcomes.saga);
        continue;
      }
      jobs.push({
        machine,
        entityId,
        handler: effect.handler,
        kind: effect.kind,
        input: effect.input,
        key,
        causedBy: cause,
        ...(effect.compensable ? { compensable: true } : {}),
      });
    }
    await this.#insert(client, jobs);
  }

  /**
   * Inserts jobs into their queues through `client` (with the caller's transaction), each
   * carrying its handler's retry limit, and wakes one idle worker of each queue at commit.
   */
  async #insert(client: pg.ClientBase, jobs: readonly JobData[]): Promise<void> {
    const byQueue = new Map<string, JobData[]>();
    for (const data of jobs) {
      const queue = queueName(data.handler, data.kind);
      const retryLimit = this.#tasks.get(queue)?.handler.retry.limit;
      const list = byQueue.get(queue) ?? [];
      list.push(retryLimit === undefined ? data : { ...data, retryLimit });
      byQueue.set(queue, list);
    }
    for (const [queue, list] of byQueue) await insertJobs(this.#boss, client, queue, list);
    await wakeWorkers(client, this.#options.wakeChannel, [...byQueue.keys()]);
  }

  async #ensureQueue(name: string, options: Parameters<PgBoss['createQueue']>[1]): Promise<void> {
    const existing = await this.#boss.getQueue(name);
    if (existing) await this.#boss.updateQueue(name, options);
    else await this.#boss.createQueue(name, options);
  }

  /**
   * Runs a batch of jobs side by side, then records all their outcomes in one transaction:
   * one commit per batch, not per job. When that transaction fails, each job is recorded on
   * its own, so one job cannot fail the others.
   */
  async #runBatch(task: Task, jobs: Job<JobData>[]): Promise<JobResult[]> {
    const recorded = await this.#recordedOutcomes(jobs);
    const settled = await Promise.all(
      jobs.map((job) => {
        const type = recorded.get(job.id);
        return type === undefined ? this.#run(task, job) : settledFrom(job, type);
      }),
    );
    const toRecord = settled.filter((s) => isOutcome(s) && !s.recorded);
    const unrecorded = new Set<string>();
    try {
      await this.#record(task, toRecord);
    } catch (error) {
      this.#options.log.warn(
        { err: error, jobs: toRecord.length },
        'recording a batch failed; recording one by one',
      );
      for (const one of toRecord) {
        try {
          await this.#record(task, [one]);
        } catch (jobError) {
          this.#options.log.error({ err: jobError, jobId: one.job.id }, 'could not record a job outcome');
          unrecorded.add(one.job.id);
        }
      }
    }
    return settled.map((s): JobResult => {
      const { id } = s.job;
      if (unrecorded.has(id)) {
        // Runs again under the same key; on its last attempt its dead letter carries what
        // happened, and the sweep records it.
        return {
          id,
          status: 'failed',
          output: unrecordedOutput(s),
        };
      }
      if (s.ok) return { id, status: 'completed', output: null };
      // A recorded failure is final (NonRetryableError, or the last attempt): no more tries.
      if (isOutcome(s)) return { id, status: 'deadletter', output: s.error };
      return { id, status: 'failed', output: s.error };
    });
  }

  /**
   * The outcomes already recorded for jobs pg-boss hands out again (a retry, or a job that
   * expired): an attempt that recorded its outcome and then died before pg-boss settled the
   * job. Those are settled as recorded, without running the handler again. First attempts,
   * nearly every job, cost no query.
   */
  async #recordedOutcomes(jobs: readonly Job<JobData>[]): Promise<ReadonlyMap<string, string>> {
    const again = jobs.filter((job) => job.retryCount > 0);
    if (again.length === 0) return new Map();
    let types: Map<string, string>;
    try {
      types = await recordedOutcomeTypes(
        this.#options.pool,
        again.map((job) => job.id),
      );
    } catch (error) {
      // Not worth failing the batch over: run them; an outcome recorded before is still
      // not recorded twice.
      this.#options.log.warn(
        { err: error },
        'could not look up earlier outcomes of retried jobs; running them',
      );
      return new Map();
    }
    for (const job of again) {
      const type = types.get(job.id);
      if (type === undefined) continue;
      this.#options.log.warn(
        { jobId: job.id, handler: job.data.handler, entityId: job.data.entityId, outcome: type },
        'job handed out again after its outcome was recorded; settled as recorded, not run',
      );
    }
    return types;
  }

  async #record(task: Task, settled: readonly Settled[]): Promise<void> {
    if (settled.length === 0) return;
    const outcomes: JobOutcome[] = settled.map((s) => ({
      jobId: s.job.id,
      data: s.job.data,
      ok: s.ok,
      payload: s.ok ? s.output : s.error,
    }));
    if (!OutcomeRecorder.needsTransaction(outcomes)) {
      // One statement in autocommit: round trips, not commits, are what a batch costs most.
      // pg-boss completes the jobs after; a crash in between reruns them under the same key
      // and their outcomes (keyed by job id) are not recorded twice.
      await withTransaction(this.#options.pool, (client) => this.#outcomes.record(client, outcomes), {
        autocommit: true,
        alsoRetry: isDuplicateMessageError,
      });
      return;
    }
    const completed = settled.filter((s) => s.ok).map((s) => s.job);
    await withTransaction(
      this.#options.pool,
      async (client) => {
        await this.#outcomes.record(client, outcomes);
        // The transaction is paid for anyway: complete the jobs in it (fenced to this attempt);
        // pg-boss's own settling then finds nothing left to do.
        if (completed.length > 0)
          await this.#boss.complete(task.queue, completed, null, { db: dbOf(client) });
      },
      { alsoRetry: isDuplicateMessageError },
    );
  }

  async #run(task: Task, job: Job<JobData>): Promise<Settled> {
    const { handler } = task;
    const { key, machine, entityId } = job.data;
    const attempt = job.retryCount + 1;
    // pg-boss's row was given the same limit at insert (jobs from before that: the handler's).
    const final = job.retryCount >= (job.data.retryLimit ?? handler.retry.limit);
    // A child logger per job costs more than a no-op handler; made only when used.
    let log: Logger | undefined;
    const logger = () => {
      log ??= this.#options.log.child({
        handler: handler.name,
        kind: task.kind,
        machine,
        entityId,
        key,
        attempt,
      });
      return log;
    };
    const timeout = new AbortController();
    // Combined on first use: most handlers never look at it, and AbortSignal.any is not free.
    let signal: AbortSignal | undefined;
    const shutdown = this.#shutdown.signal;
    const ctx: HandlerContext = {
      idempotencyKey: key,
      attempt,
      machine,
      entityId,
      get log() {
        return logger();
      },
      get signal() {
        signal ??= AbortSignal.any([job.signal, timeout.signal, shutdown]);
        return signal;
      },
    };
    let timer: NodeJS.Timeout | undefined;
    try {
      const parsed = task.input.safeParse(job.data.input);
      if (!parsed.success) {
        throw new StatehouseError(
          'HANDLER_INPUT_INVALID',
          `input of handler "${handler.name}" is invalid: ${parsed.error.message}`,
          { retryable: false },
        );
      }
      const timedOut = new Promise<never>((_, reject) => {
        timer = setTimeout(() => {
          const error = new StatehouseError(
            'HANDLER_TIMEOUT',
            `handler "${handler.name}" did not finish within ${handler.timeoutSeconds}s`,
            { retryable: true },
          );
          timeout.abort(error);
          reject(error);
        }, handler.timeoutSeconds * 1000);
      });
      const output = storable(
        handler.name,
        await Promise.race([task.execute(parsed.data as never, ctx), timedOut]),
      );
      return { job, ok: true, output };
    } catch (error) {
      // NonRetryableError, an invalid input, or any statehouse error marked so: retrying cannot help.
      const retryable = !(error instanceof StatehouseError && !error.retryable);
      logger().warn({ err: error, finalAttempt: final, retryable }, 'handler failed');
      return { job, ok: false, error: describeError(error), final, retryable };
    } finally {
      clearTimeout(timer);
    }
  }
}

/** A job whose outcome an earlier attempt recorded: done, or failed for good, as recorded. */
function settledFrom(job: Job<JobData>, recordedType: string): Settled {
  if (recordedType === outcomeType(job.data, 'done')) {
    return { job, ok: true, output: null, recorded: true };
  }
  return {
    job,
    ok: false,
    error: { message: `the outcome ${recordedType} was recorded by an earlier attempt` },
    final: true,
    retryable: false,
    recorded: true,
  };
}

/**
 * Whether a run's end is its job's outcome: a success, or a failure that will not be tried
 * again (NonRetryableError, or the last attempt). A retryable failure is only a try.
 */
function isOutcome(s: Settled): boolean {
  return s.ok || !s.retryable || s.final;
}

/**
 * The handler's output, checked to be storable: JSON, without the NUL characters and
 * unpaired surrogates Postgres's jsonb refuses. Checked here, so an output that cannot be
 * stored fails its own job (for good: running it again gives the same output), not the
 * batch it was recorded with.
 */
function storable(handler: string, output: unknown): unknown {
  const json = storableJson(() => output ?? null);
  if ('notJson' in json) {
    throw new StatehouseError(
      'HANDLER_OUTPUT_INVALID',
      `handler "${handler}" returned a value that is not JSON (${json.notJson.message}); return plain data`,
      { retryable: false, cause: json.notJson },
    );
  }
  if ('unstorable' in json) {
    throw new StatehouseError(
      'HANDLER_OUTPUT_INVALID',
      `handler "${handler}" returned a string with ${json.unstorable}, which Postgres cannot store; strip it`,
      { retryable: false },
    );
  }
  // Everything downstream serialises it the same way; no need to parse the text back.
  return output ?? null;
}
