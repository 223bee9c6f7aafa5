import pg from 'pg';

/** bigint columns (positions, sequences) stay far below 2^53; numbers are what callers want. */
const types = {
  getTypeParser: ((oid: number, format?: 'text' | 'binary') =>
    oid === 20
      ? (value: string) => Number(value)
      : pg.types.getTypeParser(oid, format)) as typeof pg.types.getTypeParser,
};

export interface PoolOptions {
  url: string;
  schema: string;
  max: number;
  applicationName?: string;
  /** How long a statement waits for a row lock before failing with 55P03 (default: for ever). */
  lockTimeoutMs?: number;
  /** Told when an idle pooled connection fails (it is dropped; the next checkout connects anew). */
  onIdleError?: (error: Error) => void;
}

/**
 * A pool whose sessions resolve unqualified names in the engine's schema, so every
 * query and migration can be written once and the schema stays configurable.
 */
export function createPool(options: PoolOptions): pg.Pool {
  const pool = new pg.Pool({
    connectionString: options.url,
    max: options.max,
    options: `-c search_path=${quoteIdent(options.schema)},public${options.lockTimeoutMs === undefined ? '' : ` -c lock_timeout=${options.lockTimeoutMs}`}`,
    application_name: options.applicationName ?? 'statehouse',
    types,
    connectionTimeoutMillis: 10_000,
  });
  // An idle client losing its connection (Postgres restarted) must not crash the process;
  // the next checkout simply gets a new connection.
  pool.on('error', (error) => options.onIdleError?.(error));
  return pool;
}

/** The one place an identifier is put into SQL text; values are always parameters. */
export function quoteIdent(name: string): string {
  return `"${name.replaceAll('"', '""')}"`;
}
