import type pg from 'pg';

/** SQLSTATEs after which the same transaction can simply run again. */
const RETRYABLE_SQLSTATES = new Set([
  '40001', // serialization_failure
  '40P01', // deadlock_detected
  '55P03', // lock_not_available (NOWAIT; a lock_timeout is not retried, see below)
  '57P01', // admin_shutdown (server restarting)
  '57P03', // cannot_connect_now (server starting)
  '08000', // connection_exception
  '08003', // connection_does_not_exist
  '08006', // connection_failure
]);

const RETRYABLE_NODE_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'EPIPE', 'ETIMEDOUT']);

export function isRetryableDatabaseError(error: unknown): boolean {
  const code = (error as { code?: unknown } | null)?.code;
  // A session's lock_timeout is a limit someone set on purpose; running again would only
  // multiply it. (Postgres gives NOWAIT and lock_timeout the same SQLSTATE.)
  if (isLockTimeout(error)) return false;
  if (typeof code === 'string' && (RETRYABLE_SQLSTATES.has(code) || RETRYABLE_NODE_CODES.has(code)))
    return true;
  const message = (error as Error | null)?.message ?? '';
  return /Connection terminated|connection timeout|Client has encountered a connection error/i.test(message);
}

/**
 * A statement cancelled by the session's lock_timeout (not a NOWAIT that found the row
 * taken): Postgres raises the first from its interrupt handler, whatever the language of
 * its messages.
 */
export function isLockTimeout(error: unknown): boolean {
  const e = error as { code?: unknown; routine?: unknown; message?: unknown } | null;
  if (e?.code !== '55P03') return false;
  return (
    e.routine === 'ProcessInterrupts' || (typeof e.message === 'string' && /lock timeout/i.test(e.message))
  );
}

export interface TransactionOptions {
  /** How many times a retryable failure is tried again, with doubling backoff. */
  retries?: number;
  /** Failures specific to this work that are also worth running again (e.g. a lost race). */
  alsoRetry?: (error: unknown) => boolean;
  /**
   * `work` sends exactly one statement that writes (reads may go before it, as a
   * prepared-name lookup's does), which Postgres runs as its own transaction: no begin and
   * commit round trips. Only for work that writes nothing after a failure.
   */
  autocommit?: boolean;
  /**
   * `work` begins the transaction with its first statement (`beginWith`, one round trip
   * fewer) and commits it itself; on a failure it is rolled back here.
   */
  workBegins?: boolean;
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
      return await runOnce(pool, work, bracketOf(options));
    } catch (error) {
      if (attempt >= retries || !(isRetryableDatabaseError(error) || options.alsoRetry?.(error))) throw error;
      await sleep(Math.min(2000, 20 * 2 ** attempt) * (0.5 + Math.random()));
    }
  }
}

/**
 * How `work` stands to its transaction: between begin and commit sent here, alone in
 * autocommit, or beginning and committing it itself.
 */
type Bracket = 'wrapped' | 'autocommit' | 'by-work';

function bracketOf(options: TransactionOptions): Bracket {
  if (options.workBegins && options.autocommit) {
    throw new TypeError('a transaction cannot be both begun by its work and autocommit');
  }
  return options.workBegins ? 'by-work' : options.autocommit ? 'autocommit' : 'wrapped';
}

async function runOnce<T>(
  pool: pg.Pool,
  work: (client: pg.PoolClient) => Promise<T>,
  bracket: Bracket,
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
    return await runOn(client, work, bracket, onError);
  } finally {
    client.off('error', onError);
    client.release(broken);
  }
}

/**
 * `work` on `client`: alone when `autocommit` (it sends one statement, its own transaction),
 * else between begin and commit (sent here, or by the work itself when `by-work`), rolled
 * back on failure. `onBroken` hears of a rollback that could not be sent: the session is
 * unusable.
 */
async function runOn<C extends pg.ClientBase, T>(
  client: C,
  work: (client: C) => Promise<T>,
  bracket: Bracket,
  onBroken: () => void,
): Promise<T> {
  if (bracket === 'autocommit') return work(client);
  if (bracket === 'wrapped') await client.query('begin');
  try {
    const result = await work(client);
    if (bracket === 'wrapped') await client.query('commit');
    // A work that returned without committing would hand the connection back holding its
    // locks, and the next borrower's work would join its transaction.
    else if (client.getTransactionStatus() !== 'I') {
      throw new Error('a transaction begun by its work returned without committing');
    }
    return result;
  } catch (error) {
    // A work that failed before it began has nothing to roll back.
    if (bracket === 'wrapped' || client.getTransactionStatus() !== 'I') {
      await client.query('rollback').catch(onBroken);
    }
    throw error;
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

  /** `work` on the held connection, in a transaction unless `autocommit` (see `withTransaction`). */
  async run<T>(work: (client: pg.PoolClient) => Promise<T>, options: { autocommit: boolean }): Promise<T> {
    // A connection that reported an error while idle is not worth a failed statement.
    if (this.#broken) this.release();
    const client = this.#client ?? (await this.#connect());
    try {
      return await runOn(client, work, bracketOf(options), this.#onError);
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
