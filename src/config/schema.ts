import { z } from 'zod';

/** Names used as Postgres identifiers or NATS names: kept to a safe alphabet so quoting never hides a typo. */
const identifier = z
  .string()
  .regex(
    /^[a-z_][a-z0-9_]{0,62}$/,
    'a lower-case SQL identifier: letters, digits and _, at most 63 characters',
  );
const natsName = z.string().regex(/^[A-Za-z0-9_-]{1,64}$/, 'letters, digits, _ and -, at most 64 characters');
const count = (min: number, max: number) => z.coerce.number().int().min(min).max(max);

export const configSchema = z
  .object({
    database: z
      .object({
        /** Postgres connection string; unset means "local server, else an embedded one". */
        url: z.string().url().optional(),
        schema: identifier.default('statehouse'),
        poolSize: count(2, 200).default(10),
        /**
         * How long a CLI command waits for a row an engine's transaction holds (an entity
         * mid-step, a job being settled) before it gives up and says so. The engine's own
         * transactions hold rows for milliseconds; longer means one is stuck.
         */
        commandLockTimeoutMs: count(100, 600_000).default(3000),
      })
      .strict()
      .prefault({}),
    nats: z
      .object({
        url: z.string().min(1).optional(),
        stream: natsName.default('STATEHOUSE'),
        consumer: natsName.default('statehouse-ingest'),
        /** Holds the events machines emit, for other services to consume. */
        emitStream: natsName.default('STATEHOUSE_EMITTED'),
        /** Prepended to every routed subject, e.g. `staging.` to share one NATS between environments. */
        subjectPrefix: z
          .string()
          .regex(/^([A-Za-z0-9_-]+\.)*$/, 'empty, or tokens each followed by a dot, e.g. "staging."')
          .default(''),
        maxPayloadBytes: count(64, 64 * 1024 * 1024).default(1024 * 1024),
        maxDeliver: count(-1, 1_000_000).default(-1),
        ackWaitMs: count(1000, 3_600_000).default(30_000),
      })
      .strict()
      .prefault({}),
    ingest: z
      .object({
        batchSize: count(1, 10_000).default(500),
        /**
         * Once no batch is being stored, how long to wait for more messages before storing
         * what has arrived (while one is being stored, the next fills meanwhile).
         */
        flushIntervalMs: count(0, 60_000).default(2),
      })
      .strict()
      .prefault({}),
    dispatcher: z
      .object({
        concurrency: count(1, 64).default(2),
        /** Entities claimed per transaction. */
        batchSize: count(1, 1000).default(50),
        pollIntervalMs: count(10, 60_000).default(1000),
      })
      .strict()
      .prefault({}),
    jobs: z
      .object({
        schema: identifier.default('pgboss'),
        /**
         * Fetch loops per handler queue per process. A new job wakes one idle loop per
         * process; a loop's next fetch waits for its batch's slowest job, so more loops keep
         * a queue moving past slow jobs.
         */
        concurrency: count(1, 256).default(2),
        /** Jobs one loop fetches and runs side by side. */
        batchSize: count(1, 1000).default(25),
        pollIntervalSeconds: z.coerce.number().min(0.5).max(3600).default(2),
        /** How often pg-boss expires jobs whose worker died, so they are retried. */
        superviseIntervalSeconds: count(1, 3600).default(10),
        /** How often dead letters without a recorded outcome get their `<handler>.failed`. */
        deadLetterSweepSeconds: count(1, 3600).default(5),
      })
      .strict()
      .prefault({}),
    outbox: z
      .object({
        /**
         * Hours a published emitted event stays in the outbox table before the relay deletes
         * it (0: at the relay's next pass, within a minute).
         */
        keepSentHours: z.coerce
          .number()
          .min(0)
          .max(24 * 365)
          .default(24),
      })
      .strict()
      .prefault({}),
    services: z
      .object({
        /** Project-local folder for the Postgres and NATS servers statehouse starts itself. */
        dataDir: z.string().min(1).default('.statehouse'),
        autoStart: z
          .union([z.boolean(), z.enum(['true', 'false', '1', '0'])])
          .transform((v) => v === true || v === 'true' || v === '1')
          .default(true),
      })
      .strict()
      .prefault({}),
    log: z
      .object({
        level: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
      })
      .strict()
      .prefault({}),
  })
  .strict();

export type ConfigInput = z.input<typeof configSchema>;
export type Config = Readonly<z.output<typeof configSchema>>;

/** Environment variables and the config property each one sets. */
export const environmentVariables: Readonly<Record<string, string>> = {
  DATABASE_URL: 'database.url',
  STATEHOUSE_SCHEMA: 'database.schema',
  STATEHOUSE_DB_POOL_SIZE: 'database.poolSize',
  STATEHOUSE_COMMAND_LOCK_TIMEOUT_MS: 'database.commandLockTimeoutMs',
  NATS_URL: 'nats.url',
  STATEHOUSE_STREAM: 'nats.stream',
  STATEHOUSE_CONSUMER: 'nats.consumer',
  STATEHOUSE_EMIT_STREAM: 'nats.emitStream',
  STATEHOUSE_SUBJECT_PREFIX: 'nats.subjectPrefix',
  STATEHOUSE_MAX_PAYLOAD_BYTES: 'nats.maxPayloadBytes',
  STATEHOUSE_MAX_DELIVER: 'nats.maxDeliver',
  STATEHOUSE_ACK_WAIT_MS: 'nats.ackWaitMs',
  STATEHOUSE_INGEST_BATCH_SIZE: 'ingest.batchSize',
  STATEHOUSE_INGEST_FLUSH_MS: 'ingest.flushIntervalMs',
  STATEHOUSE_DISPATCH_CONCURRENCY: 'dispatcher.concurrency',
  STATEHOUSE_DISPATCH_BATCH_SIZE: 'dispatcher.batchSize',
  STATEHOUSE_DISPATCH_POLL_MS: 'dispatcher.pollIntervalMs',
  STATEHOUSE_JOBS_SCHEMA: 'jobs.schema',
  STATEHOUSE_JOBS_CONCURRENCY: 'jobs.concurrency',
  STATEHOUSE_JOBS_BATCH_SIZE: 'jobs.batchSize',
  STATEHOUSE_JOBS_POLL_SECONDS: 'jobs.pollIntervalSeconds',
  STATEHOUSE_JOBS_SUPERVISE_SECONDS: 'jobs.superviseIntervalSeconds',
  STATEHOUSE_JOBS_DEAD_LETTER_SWEEP_SECONDS: 'jobs.deadLetterSweepSeconds',
  STATEHOUSE_OUTBOX_KEEP_SENT_HOURS: 'outbox.keepSentHours',
  STATEHOUSE_DATA_DIR: 'services.dataDir',
  STATEHOUSE_AUTOSTART: 'services.autoStart',
  STATEHOUSE_LOG_LEVEL: 'log.level',
};
