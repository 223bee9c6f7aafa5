import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { PgBoss } from 'pg-boss';
import type { TestProject } from 'vitest/node';
import { loadConfig } from '../../src/config/index.ts';
import { createPool, migrate } from '../../src/db/index.ts';
import { resolveServices, type Services } from '../../src/services/index.ts';
import { createLogger } from '../../src/shared/logger.ts';

/** One per run, so two checkouts can run the suite against the same server at once. */
const TEMPLATE_DATABASE = `statehouse_test_template_${randomBytes(4).toString('hex')}`;

let services: Services | undefined;

/**
 * Once per run: reach (or start) Postgres and NATS, and build a template database with
 * the migrations and the pg-boss schema applied, which every test file clones.
 */
export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const config = loadConfig({ env: { ...process.env, DATABASE_URL: process.env.DATABASE_URL ?? '' } });
  const log = createLogger('warn', { service: 'statehouse-test' });
  services = await resolveServices(config, log);
  const adminUrl = new URL(services.postgres.url);
  adminUrl.pathname = '/postgres';
  const templateUrl = new URL(services.postgres.url);
  templateUrl.pathname = `/${TEMPLATE_DATABASE}`;

  const admin = new pg.Client({ connectionString: adminUrl.toString() });
  await admin.connect();
  try {
    await admin.query(`drop database if exists ${TEMPLATE_DATABASE} with (force)`);
    await admin.query(`create database ${TEMPLATE_DATABASE}`);
  } finally {
    await admin.end();
  }
  const pool = createPool({ url: templateUrl.toString(), schema: config.database.schema, max: 2 });
  await migrate(pool, config.database.schema);
  await pool.end();
  const boss = new PgBoss({
    connectionString: templateUrl.toString(),
    schema: config.jobs.schema,
    supervise: false,
    schedule: false,
  });
  await boss.start();
  await boss.stop({ graceful: false });

  project.provide('adminUrl', adminUrl.toString());
  project.provide('natsUrl', services.nats.url);
  project.provide('templateDatabase', TEMPLATE_DATABASE);
  return async () => {
    const drop = new pg.Client({ connectionString: adminUrl.toString() });
    await drop.connect();
    await drop.query(`drop database if exists ${TEMPLATE_DATABASE} with (force)`).finally(() => drop.end());
    await services?.stop();
  };
}

declare module 'vitest' {
  export interface ProvidedContext {
    adminUrl: string;
    natsUrl: string;
    templateDatabase: string;
  }
}
