import { Listener, sleep } from '../db/index.ts';
import type { Logger } from './logger.ts';
import { Wakeup } from './wakeup.ts';

export interface RoundResult {
  /** More work may be waiting: go again at once. */
  more: boolean;
  /** Known time until the next work is due, to sleep less than the poll interval. */
  nextInMs?: number | undefined;
}

export interface PollingLoopOptions {
  /** Names the loop in logs. */
  name: string;
  databaseUrl: string;
  /** LISTEN channel whose notifications wake the loop; without one it only polls. */
  channel?: string;
  pollIntervalMs: number;
  /** Rounds run side by side. */
  concurrency?: number;
  log: Logger;
  round: () => Promise<RoundResult>;
}

/**
 * The loop the engine's background parts share: run a round; when it found nothing,
 * sleep until a NOTIFY on the channel, the next known due time, or the poll interval
 * (NOTIFY can be lost while the listener reconnects); back off on errors. Stopping lets
 * the rounds in flight finish and cuts any sleep short.
 */
export class PollingLoop {
  readonly #o: PollingLoopOptions;
  readonly #wakeup = new Wakeup();
  readonly #listener: Listener | undefined;
  #running = false;
  #stopping = new AbortController();
  #loops: Promise<void>[] = [];

  constructor(options: PollingLoopOptions) {
    this.#o = options;
    this.#listener =
      options.channel === undefined
        ? undefined
        : new Listener(options.databaseUrl, options.channel, () => this.#wakeup.wake(), options.log);
  }

  start(): void {
    if (this.#running) return;
    this.#running = true;
    this.#stopping = new AbortController();
    this.#listener?.start();
    this.#loops = Array.from({ length: this.#o.concurrency ?? 1 }, (_, i) => this.#loop(i));
  }

  async stop(): Promise<void> {
    if (!this.#running) return;
    this.#running = false;
    this.#stopping.abort();
    this.#wakeup.wake();
    await Promise.all(this.#loops);
    await this.#listener?.stop();
  }

  async #loop(index: number): Promise<void> {
    const { pollIntervalMs, log, name, round } = this.#o;
    let failures = 0;
    while (this.#running) {
      try {
        const { more, nextInMs } = await round();
        failures = 0;
        if (!more) await this.#wakeup.wait(Math.min(pollIntervalMs, nextInMs ?? pollIntervalMs));
      } catch (error) {
        failures++;
        log.warn({ err: error, loop: name, index }, `${name} failed; backing off`);
        await sleep(Math.min(10_000, 100 * 2 ** failures), this.#stopping.signal);
      }
    }
  }
}
