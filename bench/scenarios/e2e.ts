// Scenario "e2e": the shipped order saga (reserve → charge → ship, then an emitted event)
// under published load, timed from the first publish until every order is in its final
// state; then the same at half that rate for publish → final-state latency. Baseline
// "naive": consume, INSERT + commit per message, run the handlers inline, store the final
// state, publish the outcome, ack (bench/baselines/naive-e2e.ts).

import { mkdirSync, readdirSync } from 'node:fs';
import path from 'node:path';
import type { E2eInput } from '../lib/e2e-input.ts';
import type { WorkerRun } from '../lib/harness.ts';
import { summarizeProfile } from '../lib/profile.ts';
import { percentiles } from '../lib/stats.ts';
import {
  type Figures,
  figuresOf,
  measuredRun,
  medianRun,
  type ResultRow,
  rateOf,
  type Scenario,
  type ScenarioContext,
} from './types.ts';

export const E2E_STATEHOUSE = 'consumers/statehouse-e2e.ts';
const NAIVE = 'baselines/naive-e2e.ts';
/** The latency run lasts about this long. */
const LATENCY_SECONDS = 10;

/** One measured e2e run in a fresh database, with a stream, consumer and prefix of its own. */
export async function runE2e(
  ctx: ScenarioContext,
  spec: {
    scenario: string;
    label: string;
    module: string;
    processes: number;
    mode: E2eInput['mode'];
    orders: number;
    rate?: number;
    /** Each demo handler's simulated service latency. */
    handlerMs?: number;
  },
): Promise<WorkerRun> {
  const { services, runId, options, progress } = ctx;
  const engineProfileDir =
    options.profileDir && spec.module === E2E_STATEHOUSE
      ? path.join(
          options.profileDir,
          `${spec.scenario}-engines-${runId}-${spec.label.replace(/[^a-z0-9]+/g, '-')}`,
        )
      : undefined;
  if (engineProfileDir) mkdirSync(engineProfileDir, { recursive: true });
  const tag = `${spec.label.replace(/[^a-z0-9]+/g, '_')}_${Math.random().toString(36).slice(2, 8)}`;
  const database = `${runId}_${tag}`;
  const url = await services.createDatabase(database);
  const stream = services.trackStream(`${runId}_${tag}`.toUpperCase());
  const emitStream = services.trackStream(`${stream}_EMITTED`);
  try {
    const run = await measuredRun(ctx, {
      announce: `${spec.scenario}: ${spec.label}: ${spec.orders} orders${spec.mode === 'latency' ? ` at ${spec.rate}/s` : ''}…`,
      database,
      module: spec.module,
      input: {
        databaseUrl: url,
        natsUrl: services.natsUrl,
        stream,
        emitStream,
        consumer: `${runId}-${tag}`,
        prefix: `${runId}${tag}.`,
        orders: spec.orders,
        processes: spec.processes,
        mode: spec.mode,
        rate: spec.rate ?? 100,
        handlerMs: spec.handlerMs ?? 0,
        ...(engineProfileDir ? { engineProfileDir } : {}),
      } satisfies E2eInput,
      timeoutMs: 660_000,
    });
    const rate = run.measurement.items / (run.measurement.elapsedMs / 1000);
    const latency = run.measurement.latencyMs.length > 0 ? percentiles(run.measurement.latencyMs) : undefined;
    progress(
      `${spec.scenario}: ${spec.label}: ${Math.round(rate)} orders/s${latency ? `, p50 ${latency.p50} ms, p99 ${latency.p99} ms` : ''}`,
    );
    if (engineProfileDir) {
      for (const file of readdirSync(engineProfileDir).filter((f) => f.endsWith('.cpuprofile'))) {
        const summary = summarizeProfile(path.join(engineProfileDir, file), 15);
        progress(`engine CPU profile (whole process life): ${path.join(engineProfileDir, file)}`);
        progress(`  by area: ${summary.byArea.map((a) => `${a.name} ${a.pct}%`).join(', ')}`);
        for (const f of summary.topFunctions) progress(`  ${String(f.pct).padStart(5)}%  ${f.name}`);
      }
    }
    return run;
  } finally {
    await services.dropDatabase(database);
  }
}

/** Figures with the engine processes' own CPU in place of the (idle) worker's. */
export function e2eFigures(variant: string, run: WorkerRun, value?: number): Figures {
  const figures = figuresOf(variant, run, value);
  const engine = Number(run.measurement.notes.engineNodeCpuSPer1k);
  return Number.isFinite(engine)
    ? { ...figures, cpuSPer1k: { ...figures.cpuSPer1k, node: engine, nodeKernel: Number.NaN } }
    : figures;
}

export const e2e: Scenario = {
  name: 'e2e',
  description:
    'the order saga end to end: statehouse (1 engine process) vs the naive consume-insert-handle loop, with instant handlers and with handlers that wait for a service (--handler-ms)',
  defaults: { events: 3000, entities: 3000 },
  variants: [
    {
      name: 'naive',
      description: 'consume, INSERT + commit, handlers inline, commit, publish, ack',
      default: true,
    },
  ],
  async run(ctx: ScenarioContext) {
    const { options } = ctx;
    const rows: ResultRow[] = [];
    const settings: Record<string, string | number | boolean> = {
      orders: options.events,
      eventsPerOrder: 4,
      repeat: options.repeat,
      engineProcesses: 1,
      handlerMs: options.handlerMs.join(','),
      engineDefaults: 'dispatcher batch 50 × 2 loops, jobs 2 loops × batch 25 per queue, ingest batch 500',
    };
    for (const handlerMs of options.handlerMs) {
      const { rows: compared, settings: own } = await compareAt(ctx, handlerMs);
      rows.push(...compared);
      Object.assign(settings, own);
    }
    return { rows, settings };
  },
};

/**
 * statehouse and the naive loop with every demo service call taking `handlerMs`: the rate
 * of each, then publish → final state at half of it.
 */
async function compareAt(ctx: ScenarioContext, handlerMs: number) {
  const { options } = ctx;
  const orders = options.events;
  const tag = options.handlerMs.length > 1 || handlerMs > 0 ? ` (handlers ${handlerMs} ms)` : '';
  // The naive loop takes three calls in a row per order; enough orders for ≈ 10 s of it.
  const naiveOrders =
    handlerMs === 0 ? orders : Math.min(orders, Math.max(100, Math.round(10_000 / (3 * handlerMs + 2))));
  const variants = [
    { label: 'statehouse', module: E2E_STATEHOUSE, orders, runs: [] as WorkerRun[] },
    { label: 'naive', module: NAIVE, orders: naiveOrders, runs: [] as WorkerRun[] },
  ];
  for (let round = 0; round < options.repeat; round++) {
    for (const v of variants) {
      v.runs.push(
        await runE2e(ctx, {
          scenario: 'e2e',
          label: `${v.label}${tag}`,
          module: v.module,
          processes: 1,
          mode: 'throughput',
          orders: v.orders,
          handlerMs,
        }),
      );
    }
  }
  const [sh, nv] = variants.map((v) => medianRun(v.runs)) as [WorkerRun, WorkerRun];
  /** Publish → final state at half `maxRate`: the rate run, the run, its percentiles. */
  const latencyOf = async (label: string, module: string, maxRate: number) => {
    const rate = Math.max(1, Math.round(maxRate / 2));
    const run = await runE2e(ctx, {
      scenario: 'e2e',
      label: `${label}${tag} latency`,
      module,
      processes: 1,
      mode: 'latency',
      orders: Math.max(100, Math.round(rate * LATENCY_SECONDS)),
      rate,
      handlerMs,
    });
    const latency = percentiles(run.measurement.latencyMs);
    return {
      rate,
      latency,
      figures: { ...e2eFigures(`${label}${tag} latency`, run, latency.p99), latencyMs: latency },
    };
  };
  const shLatency = await latencyOf('statehouse', E2E_STATEHOUSE, rateOf(sh));
  const nvLatency = await latencyOf('naive', NAIVE, rateOf(nv));
  const rows: ResultRow[] = [
    {
      scenario: 'e2e',
      baseline: 'naive',
      unit: `orders/s${tag}`,
      higherIsBetter: true,
      statehouse: e2eFigures(`statehouse${tag}`, sh),
      baselineFigures: e2eFigures(`naive${tag}`, nv),
      // Judged with instant handlers, where only the designs' own costs count; with slow
      // ones the serial naive loop is bound by the handlers' latency by construction.
      ...(handlerMs === 0 ? { target: 5 } : {}),
    },
    {
      scenario: 'e2e',
      baseline: 'naive',
      unit: `ms publish→final p99 at half rate${tag}`,
      higherIsBetter: false,
      statehouse: shLatency.figures,
      baselineFigures: nvLatency.figures,
    },
  ];
  const at = `At${handlerMs}Ms`;
  return {
    rows,
    settings: {
      [`naiveOrders${at}`]: naiveOrders,
      [`statehouseLatencyRate${at}`]: shLatency.rate,
      [`naiveLatencyRate${at}`]: nvLatency.rate,
      [`statehouseP50Ms${at}`]: shLatency.latency.p50,
      [`statehouseP99Ms${at}`]: shLatency.latency.p99,
      [`naiveP50Ms${at}`]: nvLatency.latency.p50,
      [`naiveP99Ms${at}`]: nvLatency.latency.p99,
    },
  };
}
