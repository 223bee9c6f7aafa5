import { setTimeout as delay } from 'node:timers/promises';

const TIMED_OUT: unique symbol = Symbol('timed out');

/**
 * Groups an async stream into batches: waits for a first item, then takes whatever else
 * arrives until the window closes (after `flushMs`, or when the given promise settles), up
 * to `max`. An item still in flight when the window closes is kept for the next batch,
 * never dropped.
 */
export class BatchReader<T> {
  readonly #iterator: AsyncIterator<T>;
  #inFlight: Promise<IteratorResult<T>> | undefined;

  constructor(source: AsyncIterable<T>) {
    this.#iterator = source[Symbol.asyncIterator]();
  }

  /** The next batch, or null when the source has ended. */
  async next(max: number, window: number | (() => Promise<unknown>)): Promise<T[] | null> {
    const first = await this.#pending();
    this.#inFlight = undefined;
    if (first.done) return null;
    const batch = [first.value];
    const timer = new AbortController();
    const closed: Promise<typeof TIMED_OUT> =
      typeof window === 'number'
        ? delay(window, TIMED_OUT, { signal: timer.signal }).catch(() => TIMED_OUT)
        : window().then(
            () => TIMED_OUT,
            () => TIMED_OUT,
          );
    try {
      while (batch.length < max) {
        const result = await Promise.race([this.#pending(), closed]);
        // On time-out the pull stays in flight, even if it has settled meanwhile: its
        // item is the first of the next batch.
        if (result === TIMED_OUT) break;
        this.#inFlight = undefined;
        if (result.done) break;
        batch.push(result.value);
      }
    } finally {
      timer.abort();
    }
    return batch;
  }

  /** The pull in flight, or a new one. Cleared only by the caller that consumed its result. */
  #pending(): Promise<IteratorResult<T>> {
    this.#inFlight ??= this.#iterator.next();
    return this.#inFlight;
  }
}
