import { type ChildProcess, fork } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { type CpuDelta, cpuDelta, cpuSnapshot } from './proc.ts';
import { type Measurement, type WorkerMessage, type WorkerSpec, workerMessageSchema } from './protocol.ts';
import type { BenchServices } from './services.ts';

const WORKER = fileURLToPath(new URL('../worker.ts', import.meta.url));

const running = new Set<ChildProcess>();

/** Kills the workers still running (on Ctrl-C, before their databases are dropped). */
export function killWorkers(): void {
  for (const child of running) child.kill('SIGKILL');
  running.clear();
}

export interface WorkerRun {
  measurement: Measurement;
  cpu: CpuDelta;
  /** WAL written during the window (cluster-wide, so other sessions' writes count too). */
  walBytes: number;
}

export interface RunWorkerOptions {
  services: BenchServices;
  /** Databases whose sessions count as this run's Postgres backends. */
  databases: readonly string[];
  spec: WorkerSpec;
  /** Gives up (and kills the worker) after this long. */
  timeoutMs: number;
}

/**
 * Runs one measured task in a fresh Node process (same Node, same loader flags as this
 * one) and samples the CPU counters of Postgres, NATS and the machine exactly around the
 * window the task measures.
 */
export async function runWorker(options: RunWorkerOptions): Promise<WorkerRun> {
  const { services, databases, spec, timeoutMs } = options;
  const child = fork(WORKER, [], {
    execArgv: process.execArgv,
    env: { ...process.env, BENCH_WORKER: JSON.stringify(spec) },
    // The worker's stdout (e.g. engine logs) goes to our stderr: our stdout may be JSON lines.
    stdio: ['ignore', 2, 2, 'ipc'],
  });
  running.add(child);
  child.once('exit', () => running.delete(child));
  const inbox = new Inbox(child);
  const timer = setTimeout(() => inbox.fail(new Error(`worker ${spec.module} timed out`)), timeoutMs);
  try {
    await inbox.next('ready');
    const walBefore = await services.walPosition();
    const before = cpuSnapshot();
    child.send({ type: 'go' });
    const finished = await inbox.next('finished');
    const after = cpuSnapshot();
    const walAfter = await services.walPosition();
    const backends = await services.backendPids(databases);
    child.send({ type: 'release' });
    await inbox.exit();
    if (finished.type !== 'finished') throw new Error('unreachable');
    return {
      measurement: finished.measurement,
      cpu: cpuDelta(before, after, backends),
      walBytes: await services.walBytesBetween(walBefore, walAfter),
    };
  } catch (error) {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    throw error;
  } finally {
    clearTimeout(timer);
  }
}

/** The worker's messages in order, failing on `failed`, an early exit, or a time-out. */
class Inbox {
  readonly #queue: WorkerMessage[] = [];
  #waiter: { type: string; resolve: (m: WorkerMessage) => void; reject: (e: Error) => void } | undefined;
  #error: Error | undefined;
  readonly #exited: Promise<number | null>;

  constructor(child: ChildProcess) {
    child.on('message', (raw: unknown) => {
      const parsed = workerMessageSchema.safeParse(raw);
      if (!parsed.success) return this.fail(new Error(`unexpected worker message ${JSON.stringify(raw)}`));
      if (parsed.data.type === 'failed') return this.fail(new Error(`worker failed: ${parsed.data.message}`));
      this.#queue.push(parsed.data);
      this.#deliver();
    });
    this.#exited = new Promise((resolve) => {
      child.on('exit', (code, signal) => {
        if (code !== 0) this.fail(new Error(`worker exited with ${signal ?? code}`));
        resolve(code);
      });
    });
  }

  next(type: WorkerMessage['type']): Promise<WorkerMessage> {
    return new Promise((resolve, reject) => {
      this.#waiter = { type, resolve, reject };
      this.#deliver();
    });
  }

  async exit(): Promise<void> {
    await this.#exited;
    if (this.#error) throw this.#error;
  }

  fail(error: Error): void {
    this.#error ??= error;
    this.#deliver();
  }

  #deliver(): void {
    const waiter = this.#waiter;
    if (!waiter) return;
    if (this.#error) {
      this.#waiter = undefined;
      waiter.reject(this.#error);
      return;
    }
    const message = this.#queue.shift();
    if (!message) return;
    this.#waiter = undefined;
    if (message.type !== waiter.type)
      waiter.reject(new Error(`expected ${waiter.type}, got ${message.type}`));
    else waiter.resolve(message);
  }
}
