import { type JetStreamClient, type JetStreamManager, jetstream, jetstreamManager } from '@nats-io/jetstream';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import type pg from 'pg';
import { Dispatcher, type DispatcherOptions, LIVE_STATUSES, TimerScheduler } from '../actors/index.ts';
import type { Config } from '../config/index.ts';
import {
  createPool,
  dispatchChannel,
  jobsChannel,
  migrate,
  outboxChannel,
  timerChannel,
} from '../db/index.ts';
import { ConfigError } from '../errors/index.ts';
import { ensureStream, Ingestor, type IngestorOptions } from '../ingest/index.ts';
import { type Handler, JobOperations, JobRunner } from '../jobs/index.ts';
import { OutboxRelay } from '../outbox/index.ts';
import { createLogger, type Logger } from '../shared/logger.ts';
import { type Workflow, WorkflowRegistry } from '../workflows/index.ts';
import { logNatsStatus } from './nats-status.ts';

type Part = 'ingest' | 'dispatch' | 'jobs' | 'outbox';

export interface EngineOptions {
  config: Config;
  /** Postgres and NATS as resolved by `resolveServices`, or given directly. */
  databaseUrl: string;
  natsUrl: string;
  workflows: readonly Workflow[];
  handlers: readonly Handler<never, unknown>[];
  log?: Logger;
  /** Which parts run in this process; all by default. */
  parts?: Partial<Record<Part, boolean>>;
  /** Fault hooks for tests: each may throw to simulate a crash at that point. */
  hooks?: NonNullable<IngestorOptions['hooks']> & NonNullable<DispatcherOptions['hooks']>;
}

/**
 * One engine process: ingest, dispatcher and job workers over a shared pool. It holds no
 * state of its own; any number can run against the same Postgres and NATS.
 */
export class Engine {
  readonly config: Config;
  readonly pool: pg.Pool;
  readonly registry: WorkflowRegistry;
  readonly log: Logger;
  readonly jobs: JobRunner;
  /** Retry, redrive and cancel jobs; available once the engine has started. */
  readonly operations: JobOperations;
  readonly dispatcher: Dispatcher;
  readonly nats: NatsConnection;
  readonly js: JetStreamClient;
  readonly jsm: JetStreamManager;
  readonly #ingestor: Ingestor;
  readonly #parts: Record<Part, boolean>;
  readonly #relay: OutboxRelay;
  readonly #timers: TimerScheduler;
  #started = false;

  private constructor(options: EngineOptions, nats: NatsConnection, jsm: JetStreamManager, pool: pg.Pool) {
    const { config } = options;
    this.config = config;
    this.log = options.log ?? createLogger(config.log.level, { service: 'statehouse' });
    this.registry = new WorkflowRegistry(options.workflows, { subjectPrefix: config.nats.subjectPrefix });
    this.pool = pool;
    this.nats = nats;
    this.jsm = jsm;
    this.js = jetstream(nats);
    // Ends when the connection closes (stop); a failure to watch must not stop the engine.
    logNatsStatus(nats, this.log.child({ part: 'nats' })).catch(() => {});
    this.#parts = { ingest: true, dispatch: true, jobs: true, outbox: true, ...options.parts };
    const notifyChannel = dispatchChannel(config.database.schema);
    this.jobs = new JobRunner({
      databaseUrl: options.databaseUrl,
      pool,
      bossSchema: config.jobs.schema,
      handlers: options.handlers,
      concurrency: config.jobs.concurrency,
      batchSize: config.jobs.batchSize,
      pollIntervalSeconds: config.jobs.pollIntervalSeconds,
      superviseIntervalSeconds: config.jobs.superviseIntervalSeconds,
      deadLetterSweepSeconds: config.jobs.deadLetterSweepSeconds,
      wakeChannel: jobsChannel(config.database.schema),
      notifyChannel,
      log: this.log.child({ part: 'jobs' }),
    });
    this.operations = new JobOperations({
      pool,
      boss: this.jobs.boss,
      bossSchema: config.jobs.schema,
      outcomes: this.jobs.outcomes,
      notifyChannel,
      wakeChannel: jobsChannel(config.database.schema),
    });
    this.dispatcher = new Dispatcher({
      pool,
      databaseUrl: options.databaseUrl,
      registry: this.registry,
      effects: this.jobs,
      notifyChannel,
      outboxChannel: outboxChannel(config.database.schema),
      timerChannel: timerChannel(config.database.schema),
      ...(options.hooks?.beforeStepCommit
        ? { hooks: { beforeStepCommit: options.hooks.beforeStepCommit } }
        : {}),
      concurrency: config.dispatcher.concurrency,
      batchSize: config.dispatcher.batchSize,
      pollIntervalMs: config.dispatcher.pollIntervalMs,
      log: this.log.child({ part: 'dispatcher' }),
    });
    this.#timers = new TimerScheduler({
      pool,
      databaseUrl: options.databaseUrl,
      timerChannel: timerChannel(config.database.schema),
      dispatchChannel: notifyChannel,
      pollIntervalMs: config.dispatcher.pollIntervalMs,
      log: this.log.child({ part: 'timers' }),
    });
    this.#relay = new OutboxRelay({
      pool,
      databaseUrl: options.databaseUrl,
      schema: config.database.schema,
      js: this.js,
      subjectPrefix: config.nats.subjectPrefix,
      notifyChannel: outboxChannel(config.database.schema),
      pollIntervalMs: config.dispatcher.pollIntervalMs,
      keepSentHours: config.outbox.keepSentHours,
      log: this.log.child({ part: 'outbox' }),
    });
    this.#ingestor = new Ingestor({
      pool,
      databaseUrl: options.databaseUrl,
      js: this.js,
      jsm,
      registry: this.registry,
      stream: config.nats.stream,
      consumer: config.nats.consumer,
      batchSize: config.ingest.batchSize,
      flushIntervalMs: config.ingest.flushIntervalMs,
      maxPayloadBytes: config.nats.maxPayloadBytes,
      ackWaitMs: config.nats.ackWaitMs,
      maxDeliver: config.nats.maxDeliver,
      notifyChannel,
      log: this.log.child({ part: 'ingest' }),
      ...(options.hooks?.afterCommit ? { hooks: { afterCommit: options.hooks.afterCommit } } : {}),
    });
  }

  /** Connects, applies migrations, and sets up the stream and the job queues. Nothing runs yet. */
  static async create(engineOptions: EngineOptions): Promise<Engine> {
    const { config } = engineOptions;
    const log = engineOptions.log ?? createLogger(config.log.level, { service: 'statehouse' });
    const options = { ...engineOptions, log };
    const pool = createPool({
      url: options.databaseUrl,
      schema: config.database.schema,
      max: config.database.poolSize,
      onIdleError: (error) =>
        log.warn({ err: error }, 'an idle Postgres connection failed; the next query connects anew'),
    });
    let nats: NatsConnection | undefined;
    try {
      await migrate(pool, config.database.schema);
      nats = await connect({ servers: options.natsUrl, maxReconnectAttempts: -1, name: 'statehouse' });
      const jsm = await jetstreamManager(nats);
      const engine = new Engine(options, nats, jsm, pool);
      await checkVersionsInUse(pool, engine.registry);
      if (engine.#parts.dispatch) {
        // Only a warning: never a reason not to start.
        await warnOfUnregisteredBacklog(pool, engine.registry, log).catch((error: unknown) =>
          log.warn({ err: error }, 'could not look for entities waiting for a machine not registered here'),
        );
      }
      await ensureStream(jsm, { stream: config.nats.stream, subjects: engine.registry.subjects });
      const emitted = engine.registry.emittedSubjects;
      if (emitted.length > 0) await ensureStream(jsm, { stream: config.nats.emitStream, subjects: emitted });
      // Jobs are inserted by the dispatcher and run by the workers; an ingest-only process needs neither.
      if (engine.#parts.jobs || engine.#parts.dispatch) await engine.jobs.install();
      return engine;
    } catch (error) {
      await nats?.close().catch(() => {});
      await pool.end().catch(() => {});
      throw error;
    }
  }

  /** The subjects publishers can send to, with the configured prefix. */
  get subjects(): string[] {
    return this.registry.subjects;
  }

  async start(): Promise<void> {
    if (this.#started) return;
    this.#started = true;
    if (this.#parts.jobs) await this.jobs.start();
    if (this.#parts.dispatch) {
      this.dispatcher.start();
      this.#timers.start();
    }
    if (this.#parts.outbox) this.#relay.start();
    if (this.#parts.ingest) this.#ingestor.start();
  }

  /**
   * Stops in flow order: no new messages in, the dispatcher's open transactions commit,
   * running handlers finish (or are aborted after the grace period and retried later).
   */
  async stop(options: { graceMs?: number } = {}): Promise<void> {
    const step = async (part: string, stop: () => Promise<unknown>) => {
      const started = Date.now();
      await stop();
      this.log.debug({ part, ms: Date.now() - started }, 'stopped');
    };
    if (this.#started) {
      await step('ingest', () => this.#ingestor.stop());
      await step('timers', () => this.#timers.stop());
      await step('dispatch', () => this.dispatcher.stop());
      await step('outbox', () => this.#relay.stop());
      await step('jobs', () => this.jobs.stop(options.graceMs));
      this.#started = false;
    } else {
      await step('jobs', () => this.jobs.stop(0));
    }
    await step('nats', () => this.nats.drain().catch(() => {}));
    await step('pool', () => this.pool.end());
  }
}

/**
 * Refuses to start when entities still in flight use a machine version that is gone and
 * that the newest version cannot migrate: they would fail on their next event.
 */
export async function checkVersionsInUse(pool: pg.Pool, registry: WorkflowRegistry): Promise<void> {
  const { rows } = await pool.query<{ machine: string; version: number; entities: number }>(
    // Statuses named (not `<> 'done'`), so that entities_by_status reads only the entities
    // in flight, however many are done.
    `select machine, machine_version as version, count(*)::int as entities from entities
     where machine = any($1::text[]) and status = any($2::text[]) and machine_version is not null
     group by machine, machine_version`,
    [registry.names, LIVE_STATUSES],
  );
  const problems = rows.filter(
    (r) => !registry.get(r.machine, r.version) && !registry.latest(r.machine)?.migrations[r.version],
  );
  if (problems.length === 0) return;
  const lines = problems.map((p) => {
    const latest = registry.latest(p.machine)!.version;
    return `  machine "${p.machine}" version ${p.version} is used by ${p.entities} entities that are not done; keep version ${p.version} registered next to version ${latest}, or give version ${latest} a snapshot migration from it (migrations: { ${p.version}: (snapshot) => … })`;
  });
  throw new ConfigError(`cannot remove machine versions still in use:\n${lines.join('\n')}`);
}

/**
 * Says at start when entities have events waiting for a machine this engine does not
 * register (a workflow removed, or served by other processes): the dispatcher never claims
 * them, and each claim steps over them in the queue. Nothing claims them, so they stay at
 * its front: the oldest 10,000 entries of the queue are read, however long it is.
 * Resolves with those machines' names.
 */
export async function warnOfUnregisteredBacklog(
  pool: pg.Pool,
  registry: WorkflowRegistry,
  log: Logger,
): Promise<string[]> {
  const { rows } = await pool.query<{ machine: string }>(
    `select distinct machine from (
       select machine from entities
       where pending_since is not null and status <> 'failed'
       order by pending_since
       limit 10000) oldest
     where machine <> all($1::text[])
     order by machine`,
    [registry.names],
  );
  const machines = rows.map((row) => row.machine);
  if (machines.length > 0) {
    log.warn(
      { machines },
      `entities of ${machines.map((m) => `"${m}"`).join(', ')} have events waiting, and this engine registers no workflow of that name: they are applied once an engine that does runs (register the workflow again if it was removed)`,
    );
  }
  return machines;
}
