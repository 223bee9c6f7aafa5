import { z } from 'zod';

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
});
export type JobsInput = z.infer<typeof jobsInput>;

/** Jobs inserted per `insert` call while filling the queue (before the clock starts). */
export const INSERT_CHUNK = 1000;

/** Counts the jobs of `queue` that pg-boss has not finished yet. */
export const UNFINISHED_SQL = (schema: string) =>
  `select count(*)::int as n from ${schema}.job where name = $1 and state in ('created', 'retry', 'active')`;
