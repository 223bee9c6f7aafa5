import { randomBytes } from 'node:crypto';
import {
  type JetStreamManager,
  jetstream,
  jetstreamManager,
  RetentionPolicy,
  StorageType,
} from '@nats-io/jetstream';
import { connect, headers, type NatsConnection } from '@nats-io/transport-node';
import pg from 'pg';
import { loadConfig } from '../../src/config/index.ts';
import { resolveServices, type Services } from '../../src/services/index.ts';
import { createLogger } from '../../src/shared/logger.ts';

/**
 * Postgres and NATS for a benchmark run, found the way the engine finds them (DATABASE_URL,
 * NATS_URL, else the local servers, else ones it starts), plus the few admin operations
 * the scenarios need: scratch databases and streams that are dropped again afterwards.
 */
export class BenchServices {
  readonly adminUrl: string;
  readonly natsUrl: string;
  readonly #services: Services;
  readonly #databases = new Set<string>();
  readonly #streams = new Set<string>();
  #nats: NatsConnection | undefined;

  private constructor(services: Services) {
    this.#services = services;
    const admin = new URL(services.postgres.url);
    admin.pathname = '/postgres';
    this.adminUrl = admin.toString();
    this.natsUrl = services.nats.url;
  }

  static async resolve(): Promise<BenchServices> {
    const config = loadConfig({ env: process.env, file: '' });
    const services = await resolveServices(config, createLogger('warn', { service: 'statehouse-bench' }));
    return new BenchServices(services);
  }

  /** A short unique name for this run's databases, streams and subjects. */
  static runId(): string {
    return `shb${randomBytes(4).toString('hex')}`;
  }

  databaseUrl(name: string): string {
    const url = new URL(this.adminUrl);
    url.pathname = `/${name}`;
    return url.toString();
  }

  async admin<T>(work: (client: pg.Client) => Promise<T>): Promise<T> {
    const client = new pg.Client({ connectionString: this.adminUrl, application_name: 'statehouse-bench' });
    await client.connect();
    try {
      return await work(client);
    } finally {
      await client.end();
    }
  }

  /** Creates an empty database, dropped again by `cleanup`. */
  async createDatabase(name: string): Promise<string> {
    assertName(name);
    await this.admin((c) => c.query(`create database ${name}`));
    this.#databases.add(name);
    return this.databaseUrl(name);
  }

  async dropDatabase(name: string): Promise<void> {
    assertName(name);
    await this.admin((c) => c.query(`drop database if exists ${name} with (force)`));
    this.#databases.delete(name);
  }

  async nats(): Promise<NatsConnection> {
    this.#nats ??= await connect({ servers: this.natsUrl, name: 'statehouse-bench' });
    return this.#nats;
  }

  async jsm(): Promise<JetStreamManager> {
    return jetstreamManager(await this.nats());
  }

  /** A file-backed, limits-retention stream like the one the engine creates; deleted by `cleanup`. */
  async createStream(name: string, subjects: readonly string[]): Promise<void> {
    const jsm = await this.jsm();
    this.#streams.add(name);
    await jsm.streams.add({
      name,
      subjects: [...subjects],
      storage: StorageType.File,
      retention: RetentionPolicy.Limits,
    });
  }

  /** A stream someone else (an engine in a worker) creates; `cleanup` deletes it. Returns the name. */
  trackStream(name: string): string {
    this.#streams.add(name);
    return name;
  }

  /**
   * Publishes `count` messages with async JetStream publishes, at most `window` awaiting
   * their acks at once. Returns the last stream sequence and the publish rate.
   */
  async publish(
    count: number,
    message: (i: number) => { subject: string; id: string; body: string },
    window = 2000,
  ): Promise<{ lastSeq: number; perSecond: number }> {
    const js = jetstream(await this.nats());
    const encoder = new TextEncoder();
    let lastSeq = 0;
    let next = 0;
    const started = performance.now();
    const lane = async () => {
      while (next < count) {
        const m = message(next++);
        const h = headers();
        h.set('Nats-Msg-Id', m.id);
        const ack = await js.publish(m.subject, encoder.encode(m.body), { headers: h });
        if (ack.seq > lastSeq) lastSeq = ack.seq;
      }
    };
    await Promise.all(Array.from({ length: Math.min(window, count) }, lane));
    const seconds = (performance.now() - started) / 1000;
    return { lastSeq, perSecond: count / seconds };
  }

  /** Server pids of the sessions connected to these databases right now, with their application names. */
  async backendPids(databases: readonly string[]): Promise<Map<number, string>> {
    const { rows } = await this.admin((c) =>
      c.query<{ pid: number; app: string }>(
        'select pid, application_name as app from pg_stat_activity where datname = any($1)',
        [databases],
      ),
    );
    // "statehouse-ingest:<pid>" → "statehouse-ingest": one name per role, not per process.
    return new Map(rows.map((r) => [r.pid, r.app.replace(/:\d+$/, '') || '(unnamed)']));
  }

  /** The WAL insert position now (cluster-wide). */
  async walPosition(): Promise<string> {
    const { rows } = await this.admin((c) =>
      c.query<{ lsn: string }>('select pg_current_wal_insert_lsn()::text as lsn'),
    );
    return rows[0]?.lsn ?? '0/0';
  }

  async walBytesBetween(from: string, to: string): Promise<number> {
    const { rows } = await this.admin((c) =>
      c.query<{ n: string }>('select pg_wal_lsn_diff($2::pg_lsn, $1::pg_lsn)::text as n', [from, to]),
    );
    return Number(rows[0]?.n ?? 0);
  }

  /** Flushes dirty buffers so one measured run does not pay for the previous one's writes. */
  async checkpoint(): Promise<void> {
    await this.admin((c) => c.query('checkpoint')).catch(() => {});
  }

  /** Drops every database and stream this run created, then disconnects. */
  async cleanup(): Promise<void> {
    if (this.#streams.size > 0) {
      const jsm = await this.jsm().catch(() => undefined);
      for (const stream of this.#streams) await jsm?.streams.delete(stream).catch(() => {});
      this.#streams.clear();
    }
    await this.#nats?.close().catch(() => {});
    this.#nats = undefined;
    for (const db of this.#databases) {
      await this.admin((c) => c.query(`drop database if exists ${db} with (force)`)).catch(() => {});
    }
    this.#databases.clear();
  }

  async stop(): Promise<void> {
    await this.cleanup();
    await this.#services.stop();
  }
}

function assertName(name: string): void {
  if (!/^[a-z_][a-z0-9_]{0,62}$/.test(name)) throw new Error(`unsafe database name ${name}`);
}
