// The same no-op jobs through statehouse's JobRunner: the pg-boss queue, worker options
// and outcome handling the engine uses for every handler. A job counts as done when its
// outcome event (`benchNoop.done`) is stored for its entity, which is what lets the entity
// move on, and pg-boss has marked it completed.
import { z } from 'zod';
import { createPool, dispatchChannel, jobsChannel, withTransaction } from '../../src/db/index.ts';
import { defineHandler, type Handler, type JobData, JobRunner, queueName } from '../../src/jobs/index.ts';
import { insertJobs, wakeWorkers } from '../../src/jobs/queues.ts';
import { createLogger } from '../../src/shared/logger.ts';
import {
  INSERT_CHUNK,
  jobsInput,
  paced,
  startDelays,
  startTimedRun,
  untilQueueDrained,
} from '../lib/jobs-input.ts';
import { defineTask } from '../lib/task.ts';

export const SCHEMA = 'statehouse';
export const MACHINE = 'bench';

/** Latency samples go here: the handler sees when its job was enqueued. */
let onStart: ((sentAt: number) => void) | undefined;
/** Handler runs so far (any attempt), counted in-process: no query needed to follow progress. */
let ran = 0;

const benchNoop = defineHandler({
  name: 'benchNoop',
  input: z.object({ n: z.number().int(), sentAt: z.number().optional() }),
  run: async ({ sentAt }) => {
    ran++;
    if (sentAt !== undefined) onStart?.(sentAt);
    return null;
  },
  retry: { limit: 0 },
});

export default defineTask({
  input: jobsInput,
  async run(input, clock) {
    const pool = createPool({ url: input.databaseUrl, schema: SCHEMA, max: 10 });
    const runner = new JobRunner({
      databaseUrl: input.databaseUrl,
      pool,
      bossSchema: input.bossSchema,
      handlers: [benchNoop as unknown as Handler<never, unknown>],
      concurrency: input.concurrency,
      batchSize: input.batchSize,
      pollIntervalSeconds: 0.5,
      superviseIntervalSeconds: 10,
      deadLetterSweepSeconds: 5,
      notifyChannel: dispatchChannel(SCHEMA),
      wakeChannel: jobsChannel(SCHEMA),
      log: createLogger('warn', { service: 'bench-jobs' }),
    });
    await runner.install();
    const queue = queueName(benchNoop.name);
    const job = (i: number, sentAt?: number): JobData => ({
      machine: MACHINE,
      entityId: `e-${i % input.entities}`,
      handler: benchNoop.name,
      kind: 'run',
      input: sentAt === undefined ? { n: i } : { n: i, sentAt },
      key: `bench-${i}`,
      causedBy: { position: i + 1, version: 1, type: 'bench.started' },
      retryLimit: benchNoop.retry.limit,
    });
    // As a dispatcher step enqueues: pg-boss insert and a wake-up of the queue's workers, in
    // one transaction.
    const enqueue = (jobs: JobData[]) =>
      withTransaction(pool, async (client) => {
        await insertJobs(runner.boss, client, queue, jobs);
        await wakeWorkers(client, jobsChannel(SCHEMA), [queue]);
      });
    if (input.mode === 'latency') {
      await runner.start();
      const delays = startDelays(clock, input.jobs);
      onStart = delays.started;
      await clock.start();
      // One job per transaction.
      await paced(input.jobs, input.rate, (i, sentAt) => enqueue([job(i, sentAt)]));
      await delays.all;
      await clock.finish();
      await runner.stop(1000);
      await pool.end();
      return;
    }
    const send = async () => {
      for (let from = 0; from < input.jobs; from += INSERT_CHUNK) {
        const jobs: JobData[] = [];
        for (let i = from; i < Math.min(input.jobs, from + INSERT_CHUNK); i++) jobs.push(job(i));
        await enqueue(jobs);
      }
    };
    const sending = await startTimedRun(input.mode, clock, input.jobs, {
      send,
      startWorkers: () => runner.start(),
    });
    clock.notes.outcomeTransactionsPerBatch = 1;

    // Followed in-process while the handlers run, so the run's Postgres does only the run's
    // work (the pg-boss baseline counts in its handler too); then the outcomes are checked:
    // each bumps its entity's last_version.
    let counted = 0;
    while (ran < input.jobs) {
      await new Promise((r) => setTimeout(r, 5));
      if (ran > counted) clock.progress(ran - counted);
      counted = ran;
    }
    let stored = 0;
    while (stored < input.jobs) {
      const { rows } = await pool.query<{ n: number }>(
        'select coalesce(sum(last_version), 0)::int as n from entities where machine = $1',
        [MACHINE],
      );
      stored = rows[0]?.n ?? 0;
      if (stored < input.jobs) await new Promise((r) => setTimeout(r, 5));
    }
    if (input.jobs > counted) clock.progress(input.jobs - counted);
    await untilQueueDrained((text, values) => pool.query(text, values), input.bossSchema, queue);
    await sending;
    await clock.finish();
    await runner.stop(1000);
    await pool.end();
  },
});
