import type pg from 'pg';
import type { JobResult, JobWithMetadata } from 'pg-boss';
import { PgBoss } from 'pg-boss';
import { z } from 'zod';
import type { EffectSink, PlannedJob } from '../actors/index.ts';
import { withTransaction } from '../db/index.ts';
import { describeError, StatehouseError } from '../errors/index.ts';
import type { Logger } from '../shared/logger.ts';
import { appendEvents, isDuplicateMessageError } from '../store/index.ts';
import type { JobEffect } from '../workflows/index.ts';
import type { Handler, HandlerContext } from './handler.ts';

/** What a handler job carries: enough to run the handler and to route its outcome back. */
export interface JobData {
  machine: string;
  entityId: string;
  handler: string;
  kind: JobEffect['kind'];
  input: unknown;
  key: string;
  causedBy: { position: number; version: number; type: string };
}

export interface JobRunnerOptions {
  databaseUrl: string;
  pool: pg.Pool;
  bossSchema: string;
  handlers: readonly Handler<never, unknown>[];
  concurrency: number;
  batchSize: number;
  pollIntervalSeconds: number;
  /** The dispatcher's channel: an outcome is a new event for the entity. */
  notifyChannel: string;
  log: Logger;
}

export const queueName = (handler: string, kind: JobEffect['kind'] = 'run') =>
  kind === 'run' ? `statehouse.${handler}` : `statehouse.${handler}.compensate`;
export const deadLetterQueueName = (handler: string, kind: JobEffect['kind'] = 'run') =>
  `${queueName(handler, kind)}.dead`;

/** One kind of work a queue does: a handler's run, or its compensation. */
interface Task {
  handler: Handler<never, unknown>;
  kind: JobEffect['kind'];
  queue: string;
  input: z.ZodType;
  execute: (input: never, ctx: HandlerContext) => Promise<unknown>;
  outcomes: { done: string; failed: string };
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
      outcomes: { done: `${handler.name}.done`, failed: `${handler.name}.failed` },
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
      outcomes: { done: `${handler.name}.compensated`, failed: `${handler.name}.compensationFailed` },
    });
  }
  return tasks;
}

/** pg-boss marks a job expired this long after our own timeout should have stopped it. */
const EXPIRY_MARGIN_SECONDS = 30;

/**
 * Runs handlers as pg-boss jobs and turns each job's outcome into the entity's next
 * event. Also the dispatcher's effect sink: jobs are inserted through the dispatcher's
 * own transaction, so a state change and the work it asks for commit together.
 */
export class JobRunner implements EffectSink {
  readonly #options: JobRunnerOptions;
  readonly #tasks: Map<string, Task>;
  readonly #boss: PgBoss;
  readonly #shutdown = new AbortController();
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
    });
    this.#boss.on('error', (error: unknown) => options.log.error({ err: error }, 'pg-boss error'));
  }

  get boss(): PgBoss {
    return this.#boss;
  }

  accepts(effect: JobEffect): boolean {
    return this.#tasks.has(queueName(effect.handler, effect.kind));
  }

  /** Starts pg-boss and makes sure every handler's queue and dead-letter queue exist with its policy. */
  async install(): Promise<void> {
    if (this.#started) return;
    await this.#boss.start();
    this.#started = true;
    for (const { handler, queue } of this.#tasks.values()) {
      const policy = {
        retryLimit: handler.retry.limit,
        retryDelay: handler.retry.delaySeconds,
        retryBackoff: handler.retry.backoff,
        // pg-boss refuses a maximum delay without backoff (and the default policy always has one).
        ...(handler.retry.backoff && handler.retry.maxDelaySeconds
          ? { retryDelayMax: handler.retry.maxDelaySeconds }
          : {}),
        expireInSeconds: handler.timeoutSeconds + EXPIRY_MARGIN_SECONDS,
        deadLetter: `${queue}.dead`,
        notify: true,
      };
      await this.#ensureQueue(`${queue}.dead`, { notify: true });
      await this.#ensureQueue(queue, policy);
    }
  }

  /** Starts the workers. */
  async start(): Promise<void> {
    await this.install();
    const { batchSize, concurrency, pollIntervalSeconds } = this.#options;
    for (const task of this.#tasks.values()) {
      await this.#boss.work(
        task.queue,
        {
          batchSize,
          localConcurrency: concurrency,
          includeMetadata: true,
          perJobResults: true,
          pollingIntervalSeconds: pollIntervalSeconds,
          // NOTIFY announces new jobs only; a retry comes due silently, so keep the configured pace.
          notifyPollingIntervalSeconds: pollIntervalSeconds,
          burstWhenBatchFull: batchSize > 1,
        } as const,
        (jobs: JobWithMetadata<JobData>[]) => Promise.all(jobs.map((job) => this.#runJob(task, job))),
      );
    }
  }

  /** Stops taking jobs, aborts running handlers' signals after `graceMs`, and waits for them. */
  async stop(graceMs = 10_000): Promise<void> {
    if (!this.#started) return;
    const abort = setTimeout(
      () => this.#shutdown.abort(new StatehouseError('SHUTTING_DOWN', 'engine is stopping')),
      graceMs,
    );
    try {
      await this.#boss.stop({ graceful: true, timeout: graceMs + 5000 });
    } finally {
      clearTimeout(abort);
      this.#started = false;
    }
  }

  async enqueue(client: pg.ClientBase, effects: readonly PlannedJob[]): Promise<void> {
    const byQueue = new Map<string, Array<{ data: JobData }>>();
    for (const { effect, key, causedBy, machine, entityId } of effects) {
      const data: JobData = {
        machine,
        entityId,
        handler: effect.handler,
        kind: effect.kind,
        input: effect.input,
        key,
        causedBy: { position: causedBy.position, version: causedBy.version, type: causedBy.type },
      };
      const queue = queueName(effect.handler, effect.kind);
      const list = byQueue.get(queue) ?? [];
      list.push({ data });
      byQueue.set(queue, list);
    }
    const db = { executeSql: (text: string, values?: unknown[]) => client.query(text, values) };
    for (const [queue, jobs] of byQueue) await this.#boss.insert(queue, jobs, { db });
  }

  async #ensureQueue(name: string, options: Parameters<PgBoss['createQueue']>[1]): Promise<void> {
    const existing = await this.#boss.getQueue(name);
    if (existing) await this.#boss.updateQueue(name, options);
    else await this.#boss.createQueue(name, options);
  }

  async #runJob(task: Task, job: JobWithMetadata<JobData>): Promise<JobResult> {
    const { handler } = task;
    const { key, machine, entityId } = job.data;
    const attempt = job.retryCount + 1;
    const finalAttempt = job.retryCount >= job.retryLimit;
    const log = this.#options.log.child({
      handler: handler.name,
      kind: task.kind,
      machine,
      entityId,
      key,
      attempt,
    });
    const timeout = new AbortController();
    const signal = AbortSignal.any([job.signal, timeout.signal, this.#shutdown.signal]);
    const ctx: HandlerContext = { idempotencyKey: key, attempt, machine, entityId, log, signal };
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
      const output = await Promise.race([task.execute(parsed.data as never, ctx), timedOut]);
      await this.#recordOutcome(job.data, task.outcomes.done, output ?? null);
      return { id: job.id, status: 'completed', output: { output: output ?? null } };
    } catch (error) {
      const described = describeError(error);
      // NonRetryableError, an invalid input, or any statehouse error marked so: retrying cannot help.
      const retryable = !(error instanceof StatehouseError && !error.retryable);
      log.warn({ err: error, finalAttempt, retryable }, 'handler failed');
      if (retryable && !finalAttempt) return { id: job.id, status: 'failed', output: described };
      try {
        await this.#recordOutcome(job.data, task.outcomes.failed, described);
      } catch (recordError) {
        log.error({ err: recordError }, 'could not record the failure; the job will be retried');
        return { id: job.id, status: 'failed', output: described };
      }
      return { id: job.id, status: retryable ? 'failed' : 'deadletter', output: described };
    } finally {
      clearTimeout(timer);
    }
  }

  /** The first outcome of a job wins: both outcomes share one message id, so a second is a duplicate. */
  async #recordOutcome(data: JobData, type: string, payload: unknown): Promise<void> {
    const { pool, notifyChannel } = this.#options;
    await withTransaction(
      pool,
      (client) =>
        appendEvents(
          client,
          [
            {
              machine: data.machine,
              entityId: data.entityId,
              type,
              data: payload,
              metadata: { idempotencyKey: data.key, causationPosition: data.causedBy.position },
              messageId: `outcome:${data.key}`,
              source: 'handler',
            },
          ],
          { notifyChannel },
        ),
      { alsoRetry: isDuplicateMessageError },
    );
  }
}
