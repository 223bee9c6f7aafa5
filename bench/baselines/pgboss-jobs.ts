// Baseline "pg-boss": the same no-op jobs through pg-boss alone, the way its docs tune a
// throughput worker: multi-row `insert` to fill the queue, then `work` with `batchSize`
// jobs per fetch, `localConcurrency` workers, and `burstWhenBatchFull` so a worker that got
// a full batch fetches again at once instead of waiting for its polling interval; LISTEN/NOTIFY
// on, as statehouse has it. In latency mode, jobs are sent one by one at a fixed rate.
import { type Job, PgBoss } from 'pg-boss';
import {
  INSERT_CHUNK,
  type JobsInput,
  jobsInput,
  paced,
  startDelays,
  startTimedRun,
  untilQueueDrained,
} from '../lib/jobs-input.ts';
import { defineTask, type RunClock } from '../lib/task.ts';

const QUEUE = 'bench-noop';

/** What each no-op job carries. */
export interface NoopJob {
  entityId: string;
  n: number;
  key: string;
}

export default defineTask({ input: jobsInput, run: (input, clock) => runPgBossJobs(input, clock) });

/**
 * The baseline's run; `onBatch` adds work to each fetched batch before pg-boss completes it
 * (the floor run in pgboss-outcomes.ts), in the send-and-work and throughput modes.
 */
export async function runPgBossJobs(
  input: JobsInput,
  clock: RunClock,
  onBatch?: (jobs: Job<NoopJob>[]) => Promise<void>,
): Promise<void> {
  const boss = new PgBoss({
    connectionString: input.databaseUrl,
    schema: input.bossSchema,
    max: Math.max(4, input.concurrency + 2),
    application_name: 'bench-pgboss',
    useListenNotify: true,
  });
  boss.on('error', (error: unknown) => console.error('pg-boss error', error));
  await boss.start();
  await boss.createQueue(QUEUE, { retryLimit: 0, notify: true });
  const workOptions = {
    batchSize: input.batchSize,
    localConcurrency: input.concurrency,
    pollingIntervalSeconds: 0.5,
    burstWhenBatchFull: true,
  } as const;
  if (input.mode === 'latency') {
    const delays = startDelays(clock, input.jobs);
    await boss.work<{ sentAt: number }>(QUEUE, workOptions, async (jobs) => {
      for (const job of jobs) delays.started(job.data.sentAt);
    });
    await clock.start();
    await paced(input.jobs, input.rate, async (i, sentAt) => {
      await boss.send(QUEUE, { entityId: `e-${i % input.entities}`, n: i, key: `bench-${i}`, sentAt });
    });
    await delays.all;
    await clock.finish();
    await boss.stop({ graceful: true, timeout: 5000 });
    return;
  }
  const send = async () => {
    for (let from = 0; from < input.jobs; from += INSERT_CHUNK) {
      const jobs = [];
      for (let i = from; i < Math.min(input.jobs, from + INSERT_CHUNK); i++) {
        jobs.push({ data: { entityId: `e-${i % input.entities}`, n: i, key: `bench-${i}` } });
      }
      await boss.insert(QUEUE, jobs);
    }
  };
  let handled = 0;
  let allHandled: () => void = () => {};
  const done = new Promise<void>((resolve) => {
    allHandled = resolve;
  });
  const work = () =>
    boss.work<NoopJob>(QUEUE, workOptions, async (jobs) => {
      await onBatch?.(jobs);
      handled += jobs.length;
      clock.progress(jobs.length);
      if (handled >= input.jobs) allHandled();
    });
  const sending = await startTimedRun(input.mode, clock, input.jobs, { send, startWorkers: work });
  await done;
  await sending;
  // The last batches are completed after their handler returns.
  const db = boss.getDb();
  await untilQueueDrained((text, values) => db.executeSql(text, values), input.bossSchema, QUEUE);
  await clock.finish();
  await boss.stop({ graceful: true, timeout: 5000 });
}
