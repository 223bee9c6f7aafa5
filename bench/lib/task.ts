import { writeFile } from 'node:fs/promises';
import { Session } from 'node:inspector/promises';
import type { z } from 'zod';
import { type HarnessMessage, harnessMessageSchema, type Measurement } from './protocol.ts';

/** A measured piece of work that runs in a worker process (see bench/worker.ts). */
export interface WorkerTask<Schema extends z.ZodType = z.ZodType> {
  input: Schema;
  /** Sets up, calls `clock.start()` right before the measured work, `clock.finish()` right after. */
  run(input: z.output<Schema>, clock: RunClock): Promise<void>;
}

export function defineTask<Schema extends z.ZodType>(task: WorkerTask<Schema>): WorkerTask<Schema> {
  return task;
}

/**
 * The worker's side of a measurement: a start/finish handshake with the harness (which
 * samples the CPU counters of Postgres and NATS at those moments), batch commit times,
 * this process's own CPU time, and optionally a CPU profile of just the measured window.
 */
export class RunClock {
  readonly #profilePath: string | undefined;
  readonly #send: (message: unknown) => void;
  readonly #waitFor: (type: HarnessMessage['type']) => Promise<void>;
  #session: Session | undefined;
  #t0 = 0;
  #lastCommit = 0;
  #cpu0: NodeJS.CpuUsage = { user: 0, system: 0 };
  #items = 0;
  #commits = 0;
  readonly #batchSizes: number[] = [];
  readonly #cycleMs: number[] = [];
  readonly #transactionMs: number[] = [];
  readonly #latencyMs: number[] = [];
  readonly notes: Record<string, string | number | boolean> = {};
  #finished: Measurement | undefined;

  constructor(
    profilePath: string | undefined,
    send: (message: unknown) => void,
    waitFor: (type: HarnessMessage['type']) => Promise<void>,
  ) {
    this.#profilePath = profilePath;
    this.#send = send;
    this.#waitFor = waitFor;
  }

  get items(): number {
    return this.#items;
  }

  /** Milliseconds since `start()`. */
  now(): number {
    return performance.now() - this.#t0;
  }

  async start(): Promise<void> {
    this.#send({ type: 'ready' });
    await this.#waitFor('go');
    if (this.#profilePath) {
      this.#session = new Session();
      this.#session.connect();
      await this.#session.post('Profiler.enable');
      await this.#session.post('Profiler.setSamplingInterval', { interval: 500 });
      await this.#session.post('Profiler.start');
    }
    this.#cpu0 = process.cpuUsage();
    this.#t0 = performance.now();
    this.#lastCommit = this.#t0;
  }

  /** A batch of `size` items has been stored by one committed transaction; `transactionMs` if timed. */
  commit(size: number, transactionMs?: number): void {
    this.#commits++;
    this.progress(size, transactionMs);
  }

  /** `size` more items are done (a batch, but not known to be one transaction). */
  progress(size: number, transactionMs?: number): void {
    const t = performance.now();
    this.#items += size;
    this.#batchSizes.push(size);
    this.#cycleMs.push(t - this.#lastCommit);
    if (transactionMs !== undefined) this.#transactionMs.push(transactionMs);
    this.#lastCommit = t;
  }

  latency(ms: number): void {
    this.#latencyMs.push(ms);
  }

  /** Stops the clock (and the profiler) and reports to the harness; resolves once it may tear down. */
  async finish(): Promise<void> {
    if (this.#finished) return;
    const elapsedMs = performance.now() - this.#t0;
    const cpu = process.cpuUsage(this.#cpu0);
    let profile: string | undefined;
    if (this.#session && this.#profilePath) {
      const { profile: data } = await this.#session.post('Profiler.stop');
      this.#session.disconnect();
      await writeFile(this.#profilePath, JSON.stringify(data));
      profile = this.#profilePath;
    }
    this.#finished = {
      elapsedMs,
      items: this.#items,
      batchSizes: this.#batchSizes,
      commits: this.#commits > 0 ? this.#commits : null,
      cycleMs: this.#cycleMs,
      transactionMs: this.#transactionMs,
      latencyMs: this.#latencyMs,
      cpuUserS: cpu.user / 1e6,
      cpuSystemS: cpu.system / 1e6,
      maxRssMb: process.resourceUsage().maxRSS / 1024,
      ...(profile ? { profile } : {}),
      notes: this.notes,
    };
    this.#send({ type: 'finished', measurement: this.#finished });
    await this.#waitFor('release');
  }
}

/** Resolves with the next harness message of `type`; used by bench/worker.ts. */
export function harnessInbox(): (type: HarnessMessage['type']) => Promise<void> {
  const waiting = new Map<string, () => void>();
  const arrived = new Set<string>();
  process.on('message', (raw: unknown) => {
    const message = harnessMessageSchema.parse(raw);
    const resolve = waiting.get(message.type);
    if (resolve) {
      waiting.delete(message.type);
      resolve();
    } else {
      arrived.add(message.type);
    }
  });
  return (type) =>
    new Promise<void>((resolve) => {
      if (arrived.delete(type)) resolve();
      else waiting.set(type, resolve);
    });
}
