import { z } from 'zod';
import type { RunClock } from './task.ts';

/** What both job runners get: a database, how many no-op jobs, and the worker settings. */
export const jobsInput = z.object({
  databaseUrl: z.string().min(1),
  jobs: z.number().int().positive(),
  entities: z.number().int().positive(),
  /** Jobs per fetch (pg-boss `batchSize`). */
  batchSize: z.number().int().positive(),
  /** Workers per queue (pg-boss `localConcurrency`). */
  concurrency: z.number().int().positive(),
  bossSchema: z.string().min(1),
  /**
   * `send-and-work`: the clock starts with the workers idle; jobs are inserted
   * `INSERT_CHUNK` at a time, back to back, while the workers run them.
   * `throughput`: the queue is filled first (untimed), then worked off as fast as possible.
   * `latency`: workers idle first, then `jobs` are enqueued one per transaction at `rate`/s
   * and each handler reports the time from its enqueue to its start.
   */
  mode: z.enum(['send-and-work', 'throughput', 'latency']).default('send-and-work'),
  rate: z.number().positive().default(100),
});
export type JobsInput = z.infer<typeof jobsInput>;

/** Jobs inserted per `insert` call (one multi-row statement). */
export const INSERT_CHUNK = 1000;

/** Resolves once pg-boss has finished every job of `queue` (completes a batch just after its handler). */
export async function untilQueueDrained(
  query: (text: string, values: unknown[]) => Promise<{ rows: unknown[] }>,
  schema: string,
  queue: string,
): Promise<void> {
  const sql = `select count(*)::int as n from ${schema}.job where name = $1 and state in ('created', 'retry', 'active')`;
  for (;;) {
    const { rows } = await query(sql, [queue]);
    if (((rows[0] as { n?: number } | undefined)?.n ?? 0) === 0) return;
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** Start-delay samples: each handler start reports when its job was sent; `all` settles when `jobs` have started. */
export function startDelays(
  clock: RunClock,
  jobs: number,
): { started(sentAt: number): void; all: Promise<void> } {
  let count = 0;
  let done: () => void = () => {};
  const all = new Promise<void>((resolve) => {
    done = resolve;
  });
  return {
    started(sentAt) {
      clock.latency(Date.now() - sentAt);
      clock.progress(1);
      if (++count === jobs) done();
    },
    all,
  };
}

/** Enqueues `count` jobs at `rate`/s, each by `send(i, sentAt)`, on a fixed schedule (no drift). */
export async function paced(count: number, rate: number, send: (i: number, sentAt: number) => Promise<void>) {
  const t0 = performance.now();
  for (let i = 0; i < count; i++) {
    const due = t0 + (i * 1000) / rate;
    const wait = due - performance.now();
    if (wait > 0) await new Promise((r) => setTimeout(r, wait));
    await send(i, Date.now());
  }
}

/**
 * Starts the clock for a throughput run, both sides alike. `send-and-work`: workers first,
 * then the clock, then the jobs are sent while they run (the returned promise is the sending).
 * `throughput`: the queue is filled first, untimed (its rate kept as a note), then the clock
 * starts and so do the workers.
 */
export async function startTimedRun(
  mode: JobsInput['mode'],
  clock: RunClock,
  jobs: number,
  steps: { send: () => Promise<void>; startWorkers: () => Promise<unknown> },
): Promise<Promise<void>> {
  if (mode !== 'throughput') {
    await steps.startWorkers();
    await clock.start();
    return steps.send();
  }
  const t = performance.now();
  await steps.send();
  clock.notes.enqueuePerSecond = Math.round(jobs / ((performance.now() - t) / 1000));
  await clock.start();
  await steps.startWorkers();
  return Promise.resolve();
}
