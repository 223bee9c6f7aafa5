// Reference "pg-boss + outcome events" (not a baseline to beat, a floor to read the jobs
// ratio against): the pg-boss baseline's worker, plus the one write statehouse cannot skip.
// Each fetched batch's outcomes are appended to the event store as `<handler>.done` events,
// one `appendEvents` statement per batch, as statehouse's JobRunner records them, before
// pg-boss completes the batch. No input validation, timeouts, saga checks or per-job
// results: what an engine on pg-boss and an event log pays at the least, so the best
// ratio any such engine could reach against pg-boss alone.
import { createPool, dispatchChannel } from '../../src/db/index.ts';
import { appendEvents } from '../../src/store/index.ts';
import { MACHINE, SCHEMA } from '../consumers/statehouse-jobs.ts';
import { jobsInput } from '../lib/jobs-input.ts';
import { defineTask } from '../lib/task.ts';
import { runPgBossJobs } from './pgboss-jobs.ts';

export default defineTask({
  input: jobsInput,
  async run(input, clock) {
    if (input.mode === 'latency') throw new Error('pg-boss + outcome events has no latency mode');
    const pool = createPool({ url: input.databaseUrl, schema: SCHEMA, max: input.concurrency + 1 });
    const notifyChannel = dispatchChannel(SCHEMA);
    try {
      await runPgBossJobs(input, clock, async (jobs) => {
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
      });
    } finally {
      await pool.end();
    }
  },
});
