// Reference "pg-boss + outcome events" (not a baseline to beat, a floor to read the jobs
// ratio against): the pg-boss baseline's worker, plus the one write statehouse cannot skip.
// Each fetched batch's outcomes are appended to the event store as `<handler>.done` events,
// one `appendEvents` statement per batch, as statehouse's JobRunner records them, before
// pg-boss completes the batch. No input validation, timeouts, saga checks or per-job
// results: what an engine on pg-boss and an event log pays at the least, so the best
// ratio any such engine could reach against pg-boss alone.
import { PgBoss } from 'pg-boss';
import { createPool, dispatchChannel } from '../../src/db/index.ts';
import { appendEvents } from '../../src/store/index.ts';
import { MACHINE, SCHEMA } from '../consumers/statehouse-jobs.ts';
import { INSERT_CHUNK, jobsInput, startTimedRun, untilQueueDrained } from '../lib/jobs-input.ts';
import { defineTask } from '../lib/task.ts';

const QUEUE = 'bench-noop';

interface NoopData {
  entityId: string;
  n: number;
  key: string;
}

export default defineTask({
  input: jobsInput,
  async run(input, clock) {
    if (input.mode === 'latency') throw new Error('pg-boss + outcome events has no latency mode');
    const pool = createPool({ url: input.databaseUrl, schema: SCHEMA, max: input.concurrency + 1 });
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
    const notifyChannel = dispatchChannel(SCHEMA);
    const work = () =>
      boss.work<NoopData>(
        QUEUE,
        {
          batchSize: input.batchSize,
          localConcurrency: input.concurrency,
          pollingIntervalSeconds: 0.5,
          burstWhenBatchFull: true,
        },
        async (jobs) => {
          const client = await pool.connect();
          try {
            await appendEvents(
              client,
              jobs.map((job) => ({
                machine: MACHINE,
                entityId: job.data.entityId,
                type: 'benchNoop.done',
                data: null,
                metadata: { idempotencyKey: job.data.key, jobId: job.id, causationPosition: job.data.n + 1 },
                messageId: `outcome:${job.id}`,
                source: 'handler',
              })),
              { notifyChannel },
            );
          } finally {
            client.release();
          }
          handled += jobs.length;
          clock.progress(jobs.length);
          if (handled >= input.jobs) allHandled();
        },
      );
    const sending = await startTimedRun(input.mode, clock, input.jobs, { send, startWorkers: work });
    await done;
    await sending;
    const db = boss.getDb();
    await untilQueueDrained((text, values) => db.executeSql(text, values), input.bossSchema, QUEUE);
    await clock.finish();
    await boss.stop({ graceful: true, timeout: 5000 });
    await pool.end();
  },
});
