import path from 'node:path';
import { runWorker, type WorkerRun } from '../lib/harness.ts';
import { waitForQuiet } from '../lib/proc.ts';
import type { BenchServices } from '../lib/services.ts';
import { mean, median, type Percentiles, percentiles, round } from '../lib/stats.ts';

export interface RunOptions {
  events: number;
  entities: number;
  batchSize: number;
  repeat: number;
  /** Baselines to run (by name), instead of the scenario's defaults. */
  variants: readonly string[] | undefined;
  /** e2e: each demo handler's simulated service latency, one comparison per value. */
  handlerMs: readonly number[];
  /** Before each measured run, wait up to this many seconds for the machine to be idle. */
  quietSeconds: number;
  /** Folder for .cpuprofile files when profiling, else undefined. */
  profileDir: string | undefined;
}

export interface ScenarioContext {
  services: BenchServices;
  options: RunOptions;
  /** Unique per run; prefix for databases, streams, subjects. */
  runId: string;
  /** Progress on stderr (never on stdout, which may carry JSON). */
  progress(line: string): void;
}

/** The figures of one variant (statehouse or a baseline) in one scenario. */
export interface Figures {
  variant: string;
  /** The headline figure, in the row's unit. */
  value: number;
  elapsedS: number;
  items: number;
  batches: number;
  meanBatch: number;
  /** Commit-to-commit time. */
  cycleMs: Percentiles;
  /** Per-batch statement/transaction time, when the variant can see it. */
  transactionMs?: Percentiles;
  /** Per-item latency, when the scenario measures one. */
  latencyMs?: Percentiles;
  peakRssMb: number;
  /** CPU seconds per 1,000 items, by process. */
  cpuSPer1k: { node: number; nodeKernel: number; postgres: number; postgresAll: number; nats: number };
  /** Postgres CPU seconds per 1,000 items of the run's sessions, by application_name. */
  postgresCpuByApp: Record<string, number>;
  /** Share of all cores busy during the window, and waiting on I/O. */
  machineBusyPct: number;
  /** Busy time of everything else on the machine (other tests, other services): noise. */
  otherBusyPct: number;
  iowaitPct: number;
  /** Transactions committed per 1,000 items (each commit waits for a WAL flush). */
  commitsPer1k: number;
  /** WAL volume per item (cluster-wide, so other sessions' writes count too). */
  walBytesPerItem: number;
  profile?: string;
  notes: Record<string, string | number | boolean>;
}

/** statehouse against one baseline. */
export interface ResultRow {
  scenario: string;
  baseline: string;
  unit: string;
  /** Rates: higher is better and ratio = statehouse / baseline; latencies: the other way round. */
  higherIsBetter: boolean;
  statehouse: Figures;
  baselineFigures: Figures;
  /** The ratio the issue asks for, if any. */
  target?: number;
  /**
   * A run to read the ratio against, shown beside it: jobs has the least any engine on
   * pg-boss and an event log must do, so its ratio bounds statehouse's.
   */
  reference?: { figures: Figures; meaning: string };
}

export interface ScenarioResult {
  rows: ResultRow[];
  settings: Record<string, string | number | boolean>;
}

export interface VariantInfo {
  name: string;
  description: string;
  /** Runs unless --variants names others. */
  default: boolean;
}

export interface Scenario {
  name: string;
  description: string;
  /** The baselines statehouse can be compared with in this scenario. */
  variants: readonly VariantInfo[];
  /** Used when --events / --entities are not given. */
  defaults: { events: number; entities: number };
  run(ctx: ScenarioContext): Promise<ScenarioResult>;
}

export function ratioOf(row: ResultRow, of: Figures = row.statehouse): number {
  const s = of.value;
  const b = row.baselineFigures.value;
  return row.higherIsBetter ? s / b : b / s;
}

/** Turns a worker's measurement into figures; `value` is items per second unless given. */
export function figuresOf(variant: string, run: WorkerRun, value?: number): Figures {
  const m = run.measurement;
  const per1k = (seconds: number) => round((seconds / m.items) * 1000, 4);
  const elapsedS = m.elapsedMs / 1000;
  const machine = run.cpu.machineTotal;
  return {
    variant,
    value: round(value ?? m.items / elapsedS),
    elapsedS: round(elapsedS, 3),
    items: m.items,
    batches: m.batchSizes.length,
    meanBatch: round(mean(m.batchSizes), 1),
    cycleMs: percentiles(m.cycleMs),
    ...(m.transactionMs.length > 0 ? { transactionMs: percentiles(m.transactionMs) } : {}),
    ...(m.latencyMs.length > 0 ? { latencyMs: percentiles(m.latencyMs) } : {}),
    peakRssMb: round(m.maxRssMb, 1),
    cpuSPer1k: {
      node: per1k(m.cpuUserS + m.cpuSystemS),
      nodeKernel: per1k(m.cpuSystemS),
      postgres: per1k(run.cpu.postgresBackends),
      postgresAll: per1k(run.cpu.postgresAll),
      nats: per1k(run.cpu.natsServer),
    },
    postgresCpuByApp: Object.fromEntries([...run.cpu.postgresByApp].map(([app, s]) => [app, per1k(s)])),
    machineBusyPct: round((run.cpu.machineBusy / machine) * 100, 1),
    otherBusyPct: round(
      ((run.cpu.machineBusy - m.cpuUserS - m.cpuSystemS - run.cpu.postgresAll - run.cpu.natsServer) /
        machine) *
        100,
      1,
    ),
    iowaitPct: round((run.cpu.machineIowait / machine) * 100, 1),
    commitsPer1k: m.commits === null ? Number.NaN : round((m.commits / m.items) * 1000, 1),
    walBytesPerItem: round(run.walBytes / m.items),
    ...(m.profile ? { profile: m.profile } : {}),
    notes: m.notes,
  };
}

/** Items per second over a run's measured window. */
export const rateOf = (run: WorkerRun) => run.measurement.items / (run.measurement.elapsedMs / 1000);

/** The run with the median rate, for figures that come from one real run. */
export function medianRun(runs: readonly WorkerRun[]): WorkerRun {
  if (runs.length === 0) throw new Error('no runs to take the median of');
  const m = median(runs.map(rateOf));
  return runs.find((r) => rateOf(r) === m) ?? runs[0]!;
}

/**
 * One measured run: a checkpoint, a wait for a quiet machine, the announcement, then the
 * worker, with a CPU profile under `profileName` when the run asked for profiles.
 */
export async function measuredRun(
  ctx: ScenarioContext,
  run: {
    announce: string;
    database: string;
    module: string;
    input: unknown;
    timeoutMs: number;
    profileName?: string;
  },
): Promise<WorkerRun> {
  const { services, options, progress } = ctx;
  await services.checkpoint();
  await waitForQuiet(options.quietSeconds, progress);
  progress(run.announce);
  const profile =
    options.profileDir && run.profileName
      ? path.join(options.profileDir, `${run.profileName}.cpuprofile`)
      : undefined;
  return runWorker({
    services,
    databases: [run.database],
    spec: { module: run.module, input: run.input, ...(profile ? { profile } : {}) },
    timeoutMs: run.timeoutMs,
  });
}
