export { beginWith } from './begin-with.ts';
export { AdvisoryLease } from './lease.ts';
export { Listener } from './listener.ts';
export { type MigrateResult, type Migration, migrate, readMigrations } from './migrate.ts';
export { preparedName } from './planned.ts';
export { createPool, type PoolOptions, quoteIdent } from './pool.ts';
export {
  HeldConnection,
  isLockTimeout,
  isRetryableDatabaseError,
  sleep,
  withTransaction,
} from './transaction.ts';

/** The NOTIFY channel that wakes the dispatchers of the engine using `schema`. */
export const dispatchChannel = (schema: string) => `${schema}.dispatch`;

/** The NOTIFY channel that wakes the outbox relay of the engine using `schema`. */
export const outboxChannel = (schema: string) => `${schema}.outbox`;

/** The NOTIFY channel that wakes the timer schedulers of the engine using `schema`. */
export const timerChannel = (schema: string) => `${schema}.timers`;

/** The NOTIFY channel that tells job workers which queue has new jobs (payload: the queue). */
export const jobsChannel = (schema: string) => `${schema}.jobs`;
