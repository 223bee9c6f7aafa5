import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type pg from 'pg';
import { StatehouseError } from '../errors/index.ts';
import { quoteIdent } from './pool.ts';

export const MIGRATIONS_DIR = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'migrations');

export interface Migration {
  version: number;
  name: string;
  sql: string;
}

/** `0001_event_store.sql` → version 1. Files are never edited once shipped; new ones are added. */
export function readMigrations(dir = MIGRATIONS_DIR): Migration[] {
  const migrations = readdirSync(dir)
    .filter((file) => file.endsWith('.sql'))
    .map((file) => {
      const match = /^(\d+)_([\w-]+)\.sql$/.exec(file);
      if (!match)
        throw new StatehouseError('MIGRATION_FAILED', `migration file ${file} must be named NNNN_name.sql`);
      return { version: Number(match[1]), name: match[2]!, sql: readFileSync(join(dir, file), 'utf8') };
    })
    .sort((a, b) => a.version - b.version);
  migrations.forEach((migration, index) => {
    if (migration.version !== index + 1) {
      throw new StatehouseError(
        'MIGRATION_FAILED',
        `migrations must be numbered 1, 2, 3…; found ${migration.version} at position ${index + 1}`,
      );
    }
  });
  return migrations;
}

export interface MigrateResult {
  applied: Migration[];
  current: number;
}

/**
 * Brings the schema up to date. Safe when many processes start at once: one holds the
 * advisory lock and applies, the others wait and then find nothing left to do. Each
 * migration runs in its own transaction together with the row that records it.
 */
export async function migrate(
  pool: pg.Pool,
  schema: string,
  migrations = readMigrations(),
): Promise<MigrateResult> {
  const client = await pool.connect();
  const onError = () => {};
  client.on('error', onError);
  const lockKey = `statehouse.migrate:${schema}`;
  try {
    // Waiting behind another migration, and the migrations' own lock waits, are the point
    // here, whatever lock_timeout the session was given (the CLI's sessions have one):
    // lifted for the whole run, reset before the client goes back.
    await client.query('set lock_timeout = 0');
    await client.query('select pg_advisory_lock(hashtext($1))', [lockKey]);
    await client.query(`create schema if not exists ${quoteIdent(schema)}`);
    await client.query(
      `create table if not exists ${quoteIdent(schema)}.migrations (
         version integer primary key,
         name text not null,
         applied_at timestamptz not null default now()
       )`,
    );
    const { rows } = await client.query<{ version: number }>(
      `select coalesce(max(version), 0)::int as version from ${quoteIdent(schema)}.migrations`,
    );
    const current = rows[0]?.version ?? 0;
    const known = migrations.length;
    if (current > known) {
      throw new StatehouseError(
        'SCHEMA_TOO_NEW',
        `database schema "${schema}" is at migration ${current}, but this statehouse knows only ${known}; upgrade statehouse before starting it against this database`,
      );
    }
    const applied: Migration[] = [];
    for (const migration of migrations.filter((m) => m.version > current)) {
      try {
        await client.query('begin');
        await client.query(`set local search_path = ${quoteIdent(schema)}, public`);
        await client.query(migration.sql);
        await client.query(`insert into ${quoteIdent(schema)}.migrations (version, name) values ($1, $2)`, [
          migration.version,
          migration.name,
        ]);
        await client.query('commit');
        applied.push(migration);
      } catch (cause) {
        await client.query('rollback').catch(() => {});
        throw new StatehouseError(
          'MIGRATION_FAILED',
          `migration ${migration.version} (${migration.name}) failed: ${(cause as Error).message}`,
          { cause },
        );
      }
    }
    return { applied, current: current + applied.length };
  } finally {
    await client.query('select pg_advisory_unlock(hashtext($1))', [lockKey]).catch(() => {});
    await client.query('reset lock_timeout').catch(() => {});
    client.off('error', onError);
    client.release();
  }
}
