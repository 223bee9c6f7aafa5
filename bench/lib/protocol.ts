import { z } from 'zod';

// Messages between the benchmark harness and the worker process that runs one measured
// consumer. The worker runs in its own process so that its CPU time, peak memory and CPU
// profile are its own, and so that one variant's heap and JIT state never help another.

/** What the worker measured itself, between `start()` and `finish()`. */
export const measurementSchema = z.object({
  elapsedMs: z.number(),
  /** Items stored/processed in the window (events, jobs…). */
  items: z.number().int(),
  /** Items per batch, in completion order. */
  batchSizes: z.array(z.number()),
  /** How many of those batches were each one committed transaction (null: not known). */
  commits: z.number().int().nullable(),
  /** Time from one batch's completion to the next (the first from the start). */
  cycleMs: z.array(z.number()),
  /** Per-batch transaction time, where the consumer can see it. */
  transactionMs: z.array(z.number()),
  /** Per-item latencies, where the scenario measures any (e.g. enqueue → handler start). */
  latencyMs: z.array(z.number()),
  cpuUserS: z.number(),
  cpuSystemS: z.number(),
  maxRssMb: z.number(),
  profile: z.string().optional(),
  notes: z.record(z.string(), z.union([z.string(), z.number(), z.boolean()])),
});
export type Measurement = z.infer<typeof measurementSchema>;

export const workerMessageSchema = z.discriminatedUnion('type', [
  /** Set up and about to start the clock; waits for `go`. */
  z.object({ type: z.literal('ready') }),
  /** Done; the harness samples CPU, then sends `release` so the worker may tear down. */
  z.object({ type: z.literal('finished'), measurement: measurementSchema }),
  z.object({ type: z.literal('failed'), message: z.string() }),
]);
export type WorkerMessage = z.infer<typeof workerMessageSchema>;

export const harnessMessageSchema = z.discriminatedUnion('type', [
  z.object({ type: z.literal('go') }),
  z.object({ type: z.literal('release') }),
]);
export type HarnessMessage = z.infer<typeof harnessMessageSchema>;

/** Passed to the worker in the BENCH_WORKER environment variable. */
export const workerSpecSchema = z.object({
  /** Module under bench/ whose default export is a WorkerTask. */
  module: z.string().regex(/^[a-z0-9/_-]+\.ts$/),
  input: z.unknown(),
  /** Where to write a CPU profile of the measured window, if wanted. */
  profile: z.string().optional(),
});
export type WorkerSpec = z.infer<typeof workerSpecSchema>;
