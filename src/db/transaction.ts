import type pg from 'pg';

/** SQLSTATEs after which the same transaction can simply run again. */
const RETRYABLE_SQLSTATES = new Set([
  '40001', // serialization_failure
  '40P01', // deadlock_detected
  '55P03', // lock_not_available
  '57P01', // admin_shutdown (server restarting)
  '57P03', // cannot_connect_now (server starting)
  '08000', // connection_exception
  '08003', // connection_does_not_exist
  '08006', // connection_failure
]);

const RETRYABLE_NODE_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'EPIPE', 'ETIMEDOUT']);

export function isRetryableDatabaseError(error: unknown): boolean {
  const code = (error as { code?: unknown } | null)?.code;
  if (typeof code === 'string' && (RETRYABLE_SQLSTATES.has(code) || RETRYABLE_NODE_CODES.has(code)))
    return true;
  const message = (error as Error | null)?.message ?? '';
  return /Connection terminated|connection timeout|Client has encountered a connection error/i.test(message);
}

export interface TransactionOptions {
  /** How many times a retryable failure is tried again, with doubling backoff. */
  retries?: number;
  /** Failures specific to this work that are also worth running again (e.g. a lost race). */
  alsoRetry?: (error: unknown) => boolean;
  /**
   * `work` sends exactly one statement, which Postgres runs as its own transaction: no
   * begin and commit round trips. Only for work that writes nothing after a failure.
   */
  autocommit?: boolean;
}

/**
 * Runs `work` in one transaction on its own client. Failures Postgres calls transient
 * (deadlock, serialization, restart) are retried; anything else rolls back and throws.
 */
export async function withTransaction<T>(
  pool: pg.Pool,
  work: (client: pg.PoolClient) => Promise<T>,
  options: TransactionOptions = {},
): Promise<T> {
  const retries = options.retries ?? 5;
  for (let attempt = 0; ; attempt++) {
    try {
      return await runOnce(pool, work, options.autocommit ?? false);
    } catch (error) {
      if (attempt >= retries || !(isRetryableDatabaseError(error) || options.alsoRetry?.(error))) throw error;
      await sleep(Math.min(2000, 20 * 2 ** attempt) * (0.5 + Math.random()));
    }
  }
}

async function runOnce<T>(
  pool: pg.Pool,
  work: (client: pg.PoolClient) => Promise<T>,
  autocommit: boolean,
): Promise<T> {
  const client = await pool.connect();
  let broken = false;
  // A checked-out client that loses its connection emits 'error'; unheard, that would
  // crash the process instead of failing this transaction.
  const onError = () => {
    broken = true;
  };
  client.on('error', onError);
  try {
    if (!autocommit) await client.query('begin');
    const result = await work(client);
    if (!autocommit) await client.query('commit');
    return result;
  } catch (error) {
    try {
      if (!autocommit) await client.query('rollback');
    } catch {
      broken = true;
    }
    throw error;
  } finally {
    client.off('error', onError);
    client.release(broken);
  }
}

/** Resolves after `ms`, or at once when `signal` aborts: back-off that never delays a stop. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  if (signal?.aborted) return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      signal?.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal?.addEventListener('abort', done, { once: true });
  });
}

/** Runs `work` between begin and commit on `client`; rolls back and rethrows on failure. */
export async function inTransaction<C extends pg.ClientBase, T>(
  client: C,
  work: (client: C) => Promise<T>,
): Promise<T> {
  await client.query('begin');
  try {
    const result = await work(client);
    await client.query('commit');
    return result;
  } catch (error) {
    await client.query('rollback').catch(() => {});
    throw error;
  }
}

/**
 * One pooled connection kept for a serial writer: `run` uses it at once when it is held (the
 * statement goes out in the same turn of the event loop), takes one from the pool when not,
 * and gives a connection that failed back to the pool to be destroyed.
 */
export class HeldConnection {
  readonly #pool: pg.Pool;
  #client: pg.PoolClient | undefined;
  #broken = false;
  readonly #onError = () => {
    this.#broken = true;
  };

  constructor(pool: pg.Pool) {
    this.#pool = pool;
  }

  async run<T>(work: (client: pg.PoolClient) => Promise<T>): Promise<T> {
    // A connection that reported an error while idle is not worth a failed statement.
    if (this.#broken) this.release();
    const client = this.#client ?? (await this.#connect());
    try {
      return await work(client);
    } catch (error) {
      // A lost connection is replaced; after an error of the statement itself (a lost race,
      // a fenced batch) the session is fine and is kept.
      if (isRetryableDatabaseError(error) && this.#client === client) {
        this.#broken = true;
        this.release();
      }
      throw error;
    }
  }

  /** Gives the connection back to the pool (destroyed when it failed). */
  release(): void {
    const client = this.#client;
    if (!client) return;
    this.#client = undefined;
    client.off('error', this.#onError);
    client.release(this.#broken);
    this.#broken = false;
  }

  async #connect(): Promise<pg.PoolClient> {
    const client = await this.#pool.connect();
    // A held connection that breaks emits 'error'; unheard, that would crash the process.
    client.on('error', this.#onError);
    this.#client = client;
    return client;
  }
}
