import { randomBytes } from 'node:crypto';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { connect, headers, type NatsConnection } from '@nats-io/transport-node';
import pg from 'pg';
import { inject } from 'vitest';
import { handlers as demoHandlers } from '../../handlers/index.ts';
import { workflows as demoWorkflows } from '../../machines/index.ts';
import { type Config, type ConfigInput, loadConfig } from '../../src/config/index.ts';
import { createPool } from '../../src/db/index.ts';
import { Engine, type EngineOptions } from '../../src/engine/index.ts';
import type { Handler } from '../../src/jobs/index.ts';
import { createLogger } from '../../src/shared/logger.ts';

/**
 * Everything one test file owns: a database cloned from the migrated template, a NATS
 * stream and consumer of its own, and a subject prefix no other file publishes to.
 */
export interface TestContext {
  id: string;
  databaseUrl: string;
  natsUrl: string;
  config: Config;
  pool: pg.Pool;
  nats: NatsConnection;
  /** Subject with the file's prefix: `subject('orders.o-1.placed')`. */
  subject(s: string): string;
  publish(
    subject: string,
    payload: unknown,
    options?: { id?: string; headers?: Record<string, string>; raw?: boolean },
  ): Promise<number>;
  startEngine(
    options?: Partial<Omit<EngineOptions, 'config' | 'databaseUrl' | 'natsUrl'>> & { config?: ConfigInput },
  ): Promise<Engine>;
  /** The environment that points an engine process (or the CLI) at this file's database, streams and prefix. */
  processEnv(): NodeJS.ProcessEnv;
  cleanup(): Promise<void>;
}

export async function createTestContext(overrides: ConfigInput = {}): Promise<TestContext> {
  const id = `t${randomBytes(5).toString('hex')}`;
  const adminUrl = inject('adminUrl');
  const natsUrl = inject('natsUrl');
  const admin = new pg.Client({ connectionString: adminUrl });
  await admin.connect();
  try {
    await admin.query(`create database ${id} template ${inject('templateDatabase')}`);
  } finally {
    await admin.end();
  }
  const databaseUrl = Object.assign(new URL(adminUrl), { pathname: `/${id}` }).toString();
  const baseConfig: ConfigInput = {
    nats: {
      stream: id.toUpperCase(),
      emitStream: `${id.toUpperCase()}_EMITTED`,
      consumer: `${id}-ingest`,
      subjectPrefix: `${id}.`,
    },
    dispatcher: { pollIntervalMs: 200 },
    jobs: { pollIntervalSeconds: 0.5 },
    log: { level: (process.env.STATEHOUSE_TEST_LOG_LEVEL as 'warn' | undefined) ?? 'silent' },
  };
  const configFor = (extra: ConfigInput = {}) =>
    loadConfig({ env: {}, file: '', overrides: merge(merge(baseConfig, overrides), extra) });
  const config = configFor();
  const pool = createPool({ url: databaseUrl, schema: config.database.schema, max: 4 });
  const nats = await connect({ servers: natsUrl });
  const js = jetstream(nats);
  const engines: Engine[] = [];

  return {
    id,
    databaseUrl,
    natsUrl,
    config,
    pool,
    nats,
    subject: (s) => `${id}.${s}`,
    async publish(subject, payload, options = {}) {
      const h = headers();
      if (options.id) h.set('Nats-Msg-Id', options.id);
      for (const [k, v] of Object.entries(options.headers ?? {})) h.set(k, v);
      const body = options.raw ? (payload as string | Uint8Array) : JSON.stringify(payload);
      const ack = await js.publish(subject, body, { headers: h });
      return ack.seq;
    },
    processEnv: () => ({
      ...process.env,
      DATABASE_URL: databaseUrl,
      NATS_URL: natsUrl,
      STATEHOUSE_STREAM: config.nats.stream,
      STATEHOUSE_EMIT_STREAM: config.nats.emitStream,
      STATEHOUSE_CONSUMER: config.nats.consumer,
      STATEHOUSE_SUBJECT_PREFIX: config.nats.subjectPrefix,
      STATEHOUSE_DISPATCH_POLL_MS: '200',
      STATEHOUSE_JOBS_POLL_SECONDS: '0.5',
      STATEHOUSE_AUTOSTART: 'false',
      STATEHOUSE_LOG_LEVEL: process.env.STATEHOUSE_TEST_LOG_LEVEL ?? 'warn',
    }),
    async startEngine(options = {}) {
      const { config: extra, ...rest } = options;
      const engine = await Engine.create({
        config: configFor(extra),
        databaseUrl,
        natsUrl,
        workflows: demoWorkflows,
        handlers: demoHandlers as unknown as Handler<never, unknown>[],
        log: createLogger(config.log.level, { test: id }),
        ...rest,
      });
      engines.push(engine);
      await engine.start();
      return engine;
    },
    async cleanup() {
      await Promise.allSettled(engines.map((e) => e.stop({ graceMs: 1000 })));
      const jsm = await jetstreamManager(nats);
      await jsm.streams.delete(config.nats.stream).catch(() => {});
      await jsm.streams.delete(config.nats.emitStream).catch(() => {});
      await nats.close();
      await pool.end();
      const a = new pg.Client({ connectionString: adminUrl });
      await a.connect();
      await a.query(`drop database if exists ${id} with (force)`).finally(() => a.end());
    },
  };
}

/** Polls `check` until it returns a value other than undefined/false, or fails after `timeoutMs`. */
/**
 * How many connections to `databaseUrl`'s database sit idle inside a transaction. Asked on
 * a connection of its own: one taken from a pool could be the very one left open.
 */
export async function openTransactions(databaseUrl: string): Promise<number> {
  const observer = new pg.Client({ connectionString: databaseUrl });
  await observer.connect();
  try {
    const { rows } = await observer.query<{ n: number }>(
      "select count(*)::int as n from pg_stat_activity where datname = current_database() and state like 'idle in transaction%'",
    );
    return rows[0]!.n;
  } finally {
    await observer.end();
  }
}

export async function waitFor<T>(
  what: string,
  check: () => Promise<T | undefined | false>,
  timeoutMs = 20_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < deadline) {
    try {
      const value = await check();
      last = undefined;
      if (value !== undefined && value !== false) return value;
    } catch (error) {
      last = error;
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(
    `timed out after ${timeoutMs}ms waiting for ${what}${last ? `: ${(last as Error).message}` : ''}`,
  );
}

function merge(a: ConfigInput, b: ConfigInput): ConfigInput {
  const out: Record<string, unknown> = { ...a };
  for (const [key, value] of Object.entries(b)) {
    const prev = out[key];
    out[key] =
      value && typeof value === 'object' && prev && typeof prev === 'object'
        ? { ...prev, ...(value as object) }
        : value;
  }
  return out as ConfigInput;
}
