import pg from 'pg';
import { createPool, migrate } from '../../src/db/index.ts';
import { MACHINE, SCHEMA } from '../consumers/statehouse-jobs.ts';
import type { WorkerRun } from '../lib/harness.ts';
import type { JobsInput } from '../lib/jobs-input.ts';
import { percentiles } from '../lib/stats.ts';
import {
  figuresOf,
  measuredRun,
  medianRun,
  type ResultRow,
  rateOf,
  type Scenario,
  type ScenarioContext,
} from './types.ts';

const BOSS_SCHEMA = 'pgboss';
const BATCH_SIZE = 100;
const CONCURRENCY = 4;
/** The start-delay run: jobs enqueued one per transaction at this pace, to idle workers. */
const LATENCY_RATE = 200;
const LATENCY_JOBS = 2000;
const LATENCY_TARGET_P99_MS = 50;

interface Variant {
  name: string;
  module: string;
  prepare?: (url: string) => Promise<void>;
  /** Jobs that ended done (statehouse: outcome events stored; pg-boss: completed). */
  count: (client: pg.Client) => Promise<number>;
}

const STATEHOUSE: Variant = {
  name: 'statehouse',
  module: 'consumers/statehouse-jobs.ts',
  prepare: async (url) => {
    const pool = createPool({ url, schema: SCHEMA, max: 2 });
    try {
      await migrate(pool, SCHEMA);
    } finally {
      await pool.end();
    }
  },
  count: async (c) => {
    const { rows } = await c.query<{ n: number }>(
      `select count(*)::int as n from ${SCHEMA}.events where machine = $1 and type = 'benchNoop.done'`,
      [MACHINE],
    );
    return rows[0]?.n ?? 0;
  },
};

const PGBOSS: Variant = {
  name: 'pg-boss',
  module: 'baselines/pgboss-jobs.ts',
  count: async (c) => {
    const { rows } = await c.query<{ n: number }>(
      `select count(*)::int as n from ${BOSS_SCHEMA}.job where name = 'bench-noop' and state = 'completed'`,
    );
    return rows[0]?.n ?? 0;
  },
};

/**
 * Not a baseline: pg-boss plus the outcome events alone, the least an engine on pg-boss and
 * this event store does per job. Its ratio to pg-boss is the best statehouse's could be.
 */
const FLOOR: Variant = {
  name: 'pg-boss + outcome events',
  module: 'baselines/pgboss-outcomes.ts',
  prepare: STATEHOUSE.prepare,
  count: STATEHOUSE.count,
};

async function withClient<T>(url: string, work: (c: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return await work(client);
  } finally {
    await client.end();
  }
}

export const jobs: Scenario = {
  name: 'jobs',
  description:
    'no-op jobs: statehouse JobRunner (outcome → entity event) vs pg-boss alone; send + work, and a queue filled first',
  defaults: { events: 10_000, entities: 1000 },
  variants: [
    {
      name: 'pg-boss',
      description: `pg-boss work, batchSize ${BATCH_SIZE}, burstWhenBatchFull`,
      default: true,
    },
  ],
  async run(ctx: ScenarioContext) {
    const { services, options, runId, progress } = ctx;
    const MODES = [
      { mode: 'send-and-work', label: 'send + work' },
      { mode: 'throughput', label: 'queue filled first' },
    ] as const;
    const runs = new Map<string, WorkerRun[]>();
    const key = (variant: string, mode: string) => `${variant}|${mode}`;
    const enqueue = new Map<string, number>();
    for (let round = 0; round < options.repeat; round++) {
      for (const { mode } of MODES) {
        const variants = mode === 'send-and-work' ? [STATEHOUSE, PGBOSS, FLOOR] : [STATEHOUSE, PGBOSS];
        for (const variant of variants) {
          const database = `${runId}_jobs_${variant.name.replace(/[^a-z]+/g, '_')}_${mode.replace(/-/g, '_')}_${round}`;
          await services.createDatabase(database);
          const url = services.databaseUrl(database);
          await variant.prepare?.(url);
          const input: JobsInput = {
            databaseUrl: url,
            jobs: options.events,
            entities: options.entities,
            batchSize: BATCH_SIZE,
            concurrency: CONCURRENCY,
            bossSchema: BOSS_SCHEMA,
            mode,
            rate: LATENCY_RATE,
          };
          const run = await measuredRun(ctx, {
            announce: `jobs: ${variant.name}, ${mode}${options.repeat > 1 ? ` (round ${round + 1})` : ''}…`,
            database,
            module: variant.module,
            input,
            timeoutMs: Math.max(120_000, options.events * 20),
            profileName: `jobs-${variant.name}-${mode}-${runId}-${round}`,
          });
          const done = await withClient(url, variant.count);
          if (done !== options.events) {
            throw new Error(`${variant.name} finished ${done} jobs; expected ${options.events}`);
          }
          progress(`jobs: ${variant.name}, ${mode}: ${Math.round(rateOf(run))} jobs/s`);
          runs.set(key(variant.name, mode), [...(runs.get(key(variant.name, mode)) ?? []), run]);
          if (mode === 'throughput') {
            enqueue.set(variant.name, Number(run.measurement.notes.enqueuePerSecond ?? Number.NaN));
          }
          await services.dropDatabase(database);
        }
      }
    }
    // Start delay: idle workers, jobs arriving one by one (LISTEN/NOTIFY wakes the workers).
    const latencyRuns = new Map<string, WorkerRun>();
    for (const variant of [STATEHOUSE, PGBOSS]) {
      const database = `${runId}_jobs_latency_${variant.name.replace(/-/g, '_')}`;
      await services.createDatabase(database);
      const url = services.databaseUrl(database);
      await variant.prepare?.(url);
      const run = await measuredRun(ctx, {
        announce: `jobs: ${variant.name}: start delay, ${LATENCY_JOBS} jobs at ${LATENCY_RATE}/s…`,
        database,
        module: variant.module,
        input: {
          databaseUrl: url,
          jobs: LATENCY_JOBS,
          entities: options.entities,
          batchSize: BATCH_SIZE,
          concurrency: CONCURRENCY,
          bossSchema: BOSS_SCHEMA,
          mode: 'latency',
          rate: LATENCY_RATE,
        } satisfies JobsInput,
        timeoutMs: 120_000,
      });
      const delay = percentiles(run.measurement.latencyMs);
      progress(`jobs: ${variant.name}: start delay p50 ${delay.p50} ms, p99 ${delay.p99} ms`);
      latencyRuns.set(variant.name, run);
      await services.dropDatabase(database);
    }
    const delayFigures = (name: string) => {
      const run = latencyRuns.get(name)!;
      return figuresOf(`${name} start delay`, run, percentiles(run.measurement.latencyMs).p99);
    };
    const shDelay = percentiles(latencyRuns.get(STATEHOUSE.name)!.measurement.latencyMs);
    const delayRow: ResultRow = {
      scenario: 'jobs',
      baseline: PGBOSS.name,
      unit: 'ms start delay p99',
      higherIsBetter: false,
      statehouse: delayFigures(STATEHOUSE.name),
      baselineFigures: delayFigures(PGBOSS.name),
    };

    const figures = (name: string, mode: string, label: string) =>
      figuresOf(`${name} (${label})`, medianRun(runs.get(key(name, mode)) ?? []));
    const rateRows: ResultRow[] = MODES.map(({ mode, label }) => ({
      scenario: 'jobs',
      baseline: PGBOSS.name,
      unit: `jobs/s, ${label}`,
      higherIsBetter: true,
      statehouse: figures(STATEHOUSE.name, mode, label),
      baselineFigures: figures(PGBOSS.name, mode, label),
      // The issue's measure is send + work; the filled queue isolates the working side.
      ...(mode === 'send-and-work'
        ? {
            target: 0.7,
            reference: {
              figures: figures(FLOOR.name, mode, label),
              meaning: 'pg-boss plus only the outcome events: the most an engine writing them can reach',
            },
          }
        : {}),
    }));
    return {
      rows: [...rateRows, delayRow],
      settings: {
        jobs: options.events,
        entities: options.entities,
        batchSize: BATCH_SIZE,
        concurrency: CONCURRENCY,
        statehouseEnqueuePerSecond: enqueue.get(STATEHOUSE.name) ?? Number.NaN,
        pgbossEnqueuePerSecond: enqueue.get(PGBOSS.name) ?? Number.NaN,
        repeat: options.repeat,
        latencyRate: LATENCY_RATE,
        latencyJobs: LATENCY_JOBS,
        startDelayP50Ms: shDelay.p50,
        startDelayP99Ms: shDelay.p99,
        startDelayTargetP99Ms: LATENCY_TARGET_P99_MS,
        startDelayMeetsTarget: shDelay.p99 < LATENCY_TARGET_P99_MS,
      },
    };
  },
};
