import pg from 'pg';
import { createPool, migrate, withTransaction } from '../../src/db/index.ts';
import { appendEvents, type NewEvent } from '../../src/store/index.ts';
import { WorkflowRegistry } from '../../src/workflows/index.ts';
import { ledgerWorkflow } from '../../test/fixtures/ledger-app.ts';
import {
  type ActorsInput,
  entityId,
  MACHINE,
  SCHEMA,
  WARMUP_MACHINE,
} from '../consumers/statehouse-actors.ts';
import type { WorkerRun } from '../lib/harness.ts';
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

/** statehouse's dispatcher defaults (src/config/schema.ts), used by both sides. */
const BATCH_SIZE = 50;
const CONCURRENCY = 2;
const APPEND_CHUNK = 2000;
/** Applied by each variant before its clock starts (other entities, same machine): steady state, not JIT warm-up, is timed. */
const WARMUP_EVENTS = 10_000;
/** The latency run publishes for about this long (plus a warm-up), at most --events events. */
const LATENCY_SECONDS = 15;
const WARMUP_SECONDS = 2;

interface Variant {
  name: string;
  module: string;
}

const STATEHOUSE: Variant = { name: 'statehouse', module: 'consumers/statehouse-actors.ts' };
const BATCHED: Variant = { name: 'batched-update', module: 'baselines/batched-update.ts' };

/**
 * Migrates a fresh database and stores the events, round-robin over the entities; and the
 * warm-up events, five per entity, for the warm-up machine.
 */
async function prepare(url: string, events: number, entities: number, warmupEvents: number): Promise<void> {
  const pool = createPool({ url, schema: SCHEMA, max: 2 });
  const store = async (machine: string, count: number, spread: number, id: (i: number) => string) => {
    for (let from = 0; from < count; from += APPEND_CHUNK) {
      const batch: NewEvent[] = [];
      for (let i = from; i < Math.min(count, from + APPEND_CHUNK); i++) {
        batch.push({
          machine,
          entityId: id(i % spread),
          type: 'ledger.entry',
          data: { n: i },
          messageId: `${machine}-${i}`,
          source: 'nats',
        });
      }
      await withTransaction(pool, (c) => appendEvents(c, batch));
    }
  };
  try {
    await migrate(pool, SCHEMA);
    await store(WARMUP_MACHINE, warmupEvents, Math.max(1, Math.floor(warmupEvents / 5)), (i) => `w-${i}`);
    await store(MACHINE, events, entities, (i) => entityId(i, entities));
    await pool.query('vacuum analyze events');
    await pool.query('vacuum analyze entities');
  } finally {
    await pool.end();
  }
}

/** Every entity applied all its events, in order, and none failed; throws otherwise. */
async function verify(url: string, variant: string, events: number, entities: number): Promise<void> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    await client.query(`set search_path = ${SCHEMA}`);
    const { rows } = await client.query<{ applied: number; behind: number; failed: number; n: number }>(
      `select coalesce(sum(applied_version), 0)::int as applied,
              count(*) filter (where applied_version <> last_version)::int as behind,
              count(*) filter (where status = 'failed')::int as failed, count(*)::int as n
       from entities where machine = $1`,
      [MACHINE],
    );
    const r = rows[0]!;
    if (r.applied !== events || r.behind !== 0 || r.failed !== 0 || r.n !== entities) {
      throw new Error(
        `${variant}: ${JSON.stringify(r)}; expected ${events} applied over ${entities} entities`,
      );
    }
    // Spot check: entity l-1 saw 1, 1 + M, 1 + 2M… in order.
    const probe = Math.min(1, entities - 1);
    const { rows: snap } = await client.query<{ entries: number[] }>(
      `select snapshot->'context'->'entries' as entries from entities where machine = $1 and entity_id = $2`,
      [MACHINE, entityId(probe, entities)],
    );
    const expected: number[] = [];
    for (let i = probe; i < events; i += entities) expected.push(i);
    if (JSON.stringify(snap[0]?.entries) !== JSON.stringify(expected)) {
      throw new Error(
        `${variant}: entity ${entityId(probe, entities)} has ${JSON.stringify(snap[0]?.entries)}`,
      );
    }
  } finally {
    await client.end();
  }
}

export const actors: Scenario = {
  name: 'actors',
  description:
    'stored events → snapshots: statehouse dispatcher vs batched plain-pg updates; latency at half rate',
  defaults: { events: 50_000, entities: 10_000 },
  variants: [
    {
      name: BATCHED.name,
      description: `plain pg: ${BATCH_SIZE} entities per transaction, ${CONCURRENCY} loops, SKIP LOCKED claim + one multi-row UPDATE`,
      default: true,
    },
  ],
  async run(ctx: ScenarioContext) {
    const { services, options, runId, progress } = ctx;
    const { events, entities } = options;
    const prefix = `${runId}.`;
    const base = {
      natsUrl: services.natsUrl,
      subjectPrefix: prefix,
      emitStream: services.trackStream(`${runId.toUpperCase()}_EMITTED`),
      entities,
      batchSize: BATCH_SIZE,
      concurrency: CONCURRENCY,
    };
    // One stream for every run: the dispatch-only engines set it up but nothing is published
    // to it until the latency run.
    const stream = `${runId.toUpperCase()}_ACTORS`;
    await services.createStream(
      stream,
      new WorkflowRegistry([ledgerWorkflow()], { subjectPrefix: prefix }).subjects,
    );
    const runs = new Map<string, WorkerRun[]>();
    for (let round = 0; round < options.repeat; round++) {
      for (const variant of [STATEHOUSE, BATCHED]) {
        const database = `${runId}_actors_${variant.name.replace(/-/g, '_')}_${round}`;
        const url = await services.createDatabase(database);
        progress(`actors: storing ${events} events over ${entities} entities for ${variant.name}…`);
        await prepare(url, events, entities, WARMUP_EVENTS);
        const input: ActorsInput = {
          ...base,
          databaseUrl: url,
          stream,
          consumer: `${runId}-actors-${round}`,
          events,
          mode: 'throughput',
          warmupEvents: WARMUP_EVENTS,
          pollMs: 5,
        };
        const run = await measuredRun(ctx, {
          announce: `actors: ${variant.name}${options.repeat > 1 ? ` (round ${round + 1})` : ''}…`,
          database,
          module: variant.module,
          input,
          timeoutMs: Math.max(120_000, events * 10),
          profileName: `actors-${variant.name}-${runId}-${round}`,
        });
        await verify(url, variant.name, events, entities);
        progress(`actors: ${variant.name}: ${Math.round(rateOf(run))} transitions/s`);
        runs.set(variant.name, [...(runs.get(variant.name) ?? []), run]);
        await services.dropDatabase(database);
      }
    }

    // Latency at half the measured maximum of the path it times: publish → ingest → dispatch
    // → committed transition. That maximum is measured first, with a full engine and an
    // unpaced publisher (the dispatcher-only rate above is higher than ingest alone can take).
    const fullEngineRun = async (label: string, rate: number, count: number, warmupEvents: number) => {
      const database = `${runId}_actors_${label}`;
      const url = await services.createDatabase(database);
      // Each run reads the stream from the start: only its own events may be there.
      await (await services.jsm()).streams.purge(stream);
      const run = await measuredRun(ctx, {
        announce: `actors: ${label}: publishing ${warmupEvents} + ${count} events${Number.isFinite(rate) ? ` at ${rate}/s` : ' unpaced'} to a full engine…`,
        database,
        module: STATEHOUSE.module,
        input: {
          ...base,
          databaseUrl: url,
          stream,
          consumer: `${runId}-actors-${label}`,
          events: count,
          mode: 'latency',
          rate: Number.isFinite(rate) ? rate : 1_000_000,
          warmupEvents,
          pollMs: 5,
        } satisfies ActorsInput,
        timeoutMs: 180_000 + (Number.isFinite(rate) ? ((warmupEvents + count) / rate) * 1000 : 0),
        profileName: `actors-${label}-${runId}`,
      });
      await services.dropDatabase(database);
      return run;
    };
    const applied = (run: WorkerRun) => Number(run.measurement.notes.appliedPerSecond ?? rateOf(run));
    // A burst gives the engine several events per entity per step; at a steady rate each
    // step has one, so the steady maximum is lower. If the engine cannot keep up at half the
    // burst rate, the rate it did apply is its steady maximum, and the latency is measured
    // again at half of that.
    const burst = applied(
      await fullEngineRun('burst', Number.POSITIVE_INFINITY, Math.min(events, 20_000), 0),
    );
    progress(`actors: full engine, burst publish → transition: ${Math.round(burst)} transitions/s`);
    const steadyRun = async (label: string, maxRate: number) => {
      const rate = Math.max(1, Math.round(maxRate / 2));
      const count = Math.min(events, Math.max(100, Math.round(rate * LATENCY_SECONDS)));
      const warmup = Math.round(rate * WARMUP_SECONDS);
      return { rate, warmup, run: await fullEngineRun(label, rate, count, warmup) };
    };
    let steady = await steadyRun('latency', burst);
    let pipelineMax = burst;
    const keptUp = applied(steady.run) >= 0.95 * steady.rate;
    if (!keptUp) {
      pipelineMax = applied(steady.run);
      progress(
        `actors: the engine applied ${Math.round(pipelineMax)}/s of ${steady.rate}/s offered: that is its steady maximum; measuring latency at half of it`,
      );
      steady = await steadyRun('latency_steady', pipelineMax);
    }
    const { rate, warmup: warmupEvents, run: latencyRun } = steady;
    const latency = percentiles(latencyRun.measurement.latencyMs);
    progress(`actors: latency p50 ${latency.p50} ms, p99 ${latency.p99} ms`);

    const sh = figuresOf(STATEHOUSE.name, medianRun(runs.get(STATEHOUSE.name) ?? []));
    const row: ResultRow = {
      scenario: 'actors',
      baseline: BATCHED.name,
      unit: 'transitions/s',
      higherIsBetter: true,
      statehouse: {
        ...sh,
        latencyMs: latency,
        notes: {
          ...sh.notes,
          latencyRate: rate,
          latencyEvents: latencyRun.measurement.latencyMs.length,
          latencyPublishedPerSecond: Number(latencyRun.measurement.notes.publishedPerSecond ?? Number.NaN),
        },
      },
      baselineFigures: figuresOf(BATCHED.name, medianRun(runs.get(BATCHED.name) ?? [])),
      target: 0.5,
    };
    return {
      rows: [row],
      settings: {
        events,
        entities,
        eventsPerEntity: Math.round((events / entities) * 100) / 100,
        warmupEventsUntimed: WARMUP_EVENTS,
        batchSize: BATCH_SIZE,
        concurrency: CONCURRENCY,
        repeat: options.repeat,
        fullEngineBurstPerSecond: Math.round(burst),
        fullEngineSteadyMaxPerSecond: Math.round(pipelineMax),
        keptUpAtHalfBurst: keptUp,
        latencyRate: rate,
        latencyEvents: latencyRun.measurement.latencyMs.length,
        latencyWarmupEvents: warmupEvents,
        latencyPublishedPerSecond: Number(latencyRun.measurement.notes.publishedPerSecond ?? Number.NaN),
        // Events applied per second over the latency run (publish start → last applied):
        // below latencyRate means the full engine could not keep up with the publisher.
        latencyAppliedPerSecond: Math.round(rateOf(latencyRun)),
        latencyP50Ms: latency.p50,
        latencyP90Ms: latency.p90,
        latencyP99Ms: latency.p99,
        latencyMaxMs: latency.max,
        latencyTargetP99Ms: 100,
        latencyMeetsTarget: latency.p99 < 100,
      },
    };
  },
};
