import { type Config, loadConfig } from '../config/index.ts';
import { createPool, isLockTimeout } from '../db/index.ts';
import { StatehouseError } from '../errors/index.ts';
import { resolveNats, resolvePostgres } from '../services/index.ts';
import { createLogger, type Logger } from '../shared/logger.ts';

export function redactUrl(url: string): string {
  const parsed = new URL(url);
  if (parsed.password) parsed.password = '***';
  return parsed.toString();
}

/** What every command needs: the resolved config and a logger on stderr. */
export function commandContext(): { config: Config; log: Logger } {
  const config = loadConfig();
  return {
    config,
    log: createLogger(process.env.STATEHOUSE_LOG_LEVEL ?? 'warn', { service: 'statehouse-cli' }),
  };
}

/**
 * Commands other than `start` use servers that already run: starting an embedded
 * Postgres only to read one row and stop it again would help nobody.
 */
export async function withDatabase<T>(
  config: Config,
  log: Logger,
  work: (pool: ReturnType<typeof createPool>, databaseUrl: string) => Promise<T>,
): Promise<T> {
  const postgres = await resolvePostgres({
    url: config.database.url,
    autoStart: false,
    dataDir: config.services.dataDir,
    log,
  });
  const lockTimeoutMs = config.database.commandLockTimeoutMs;
  const pool = createPool({ url: postgres.url, schema: config.database.schema, max: 2, lockTimeoutMs });
  try {
    return await work(pool, postgres.url);
  } catch (error) {
    if (isLockTimeout(error)) {
      throw new StatehouseError(
        'BUSY',
        `another session held a lock this command needs for ${lockTimeoutMs} ms; an engine holds an entity or a job for milliseconds, so look for a stuck session (select pid, state, xact_start, query from pg_stat_activity where state like 'idle in transaction%' or xact_start < now() - interval '10 seconds'), end it, and try again; STATEHOUSE_COMMAND_LOCK_TIMEOUT_MS sets the wait`,
        { cause: error, retryable: true },
      );
    }
    if ((error as { code?: string }).code === '42P01') {
      throw new StatehouseError(
        'MIGRATION_FAILED',
        `the statehouse tables are not in schema "${config.database.schema}" of ${redactUrl(postgres.url)}; run \`statehouse migrate\` or \`npm start\` first`,
        { cause: error },
      );
    }
    throw error;
  } finally {
    await pool.end();
  }
}

export async function natsUrl(config: Config, log: Logger): Promise<string> {
  const nats = await resolveNats({
    url: config.nats.url,
    autoStart: false,
    dataDir: config.services.dataDir,
    log,
  });
  return nats.url;
}
