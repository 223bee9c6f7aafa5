import pg from 'pg';
import { workflows } from '../../machines/index.ts';
import { WorkflowRegistry } from '../../src/workflows/index.ts';
import { countBaselineEvents, createBaselineTables } from '../baselines/schema.ts';
import type { WorkerRun } from '../lib/harness.ts';
import type { IngestInput } from '../lib/ingest-input.ts';
import type { Figures, ResultRow, Scenario, ScenarioContext } from './types.ts';
import { figuresOf, measuredRun, medianRun, rateOf } from './types.ts';

interface Variant {
  name: string;
  module: string;
  description: string;
  /** Creates the variant's tables before the run, outside the timing. */
  prepare?: (client: pg.Client) => Promise<void>;
  count: (client: pg.Client) => Promise<{ stored: number; quarantined: number }>;
  tuning?: Partial<IngestInput['tuning']>;
  /** The ratio statehouse / this baseline should reach (from the issue). */
  target?: number;
  /**
   * Times only the first this many messages. For a consumer whose cost per message is
   * constant (one commit each) the rate is the same, and the run stays short.
   */
  maxEvents?: number;
}

const STATEHOUSE: Variant = {
  name: 'statehouse',
  module: 'consumers/statehouse-ingest.ts',
  description: 'Engine with only ingest on, demo workflows, default settings',
  count: async (c) => {
    const { rows } = await c.query<{ stored: number; quarantined: number }>(
      `select (select count(*)::int from statehouse.events) as stored,
              (select count(*)::int from statehouse.quarantine) as quarantined`,
    );
    return rows[0]!;
  },
};

const baseline = (v: Omit<Variant, 'prepare' | 'count'>): Variant => ({
  ...v,
  prepare: createBaselineTables,
  count: async (c) => ({ stored: await countBaselineEvents(c), quarantined: 0 }),
});

const NAIVE_MAX_EVENTS = 10_000;

/** Every baseline this scenario can run; `default` ones run unless --variants says otherwise. */
export const INGEST_BASELINES: ReadonlyArray<Variant & { default: boolean }> = [
  {
    ...baseline({
      name: 'batched-insert',
      module: 'baselines/batched-insert.ts',
      description:
        'hand-written: 500 per statement (one JSON document of positional arrays), pipelined, one AckAll per batch',
      target: 0.5,
    }),
    default: true,
  },
  {
    ...baseline({
      name: 'naive',
      module: 'baselines/naive.ts',
      description: 'hand-written: one message, one INSERT + commit, one ack (timed over ≤ 10,000 messages)',
      target: 10,
      maxEvents: NAIVE_MAX_EVENTS,
    }),
    default: true,
  },
  {
    ...baseline({
      name: 'batched-explicit-ack',
      module: 'baselines/batched-insert.ts',
      description: 'batched-insert, but an explicit ack per message: what one ack per batch is worth',
      tuning: { ackAll: false },
    }),
    default: false,
  },
  {
    ...baseline({
      name: 'batched-serial',
      module: 'baselines/batched-insert.ts',
      description:
        'batched-insert, but the next batch is decoded only after the commit: what pipelining is worth',
      tuning: { pipeline: false },
    }),
    default: false,
  },
  {
    ...baseline({
      name: 'batched-unnest',
      module: 'baselines/batched-insert.ts',
      description:
        'batched-insert, but rows as one array parameter per column (unnest): what one JSON document is worth',
      tuning: { encoding: 'arrays' },
    }),
    default: false,
  },
  {
    ...baseline({
      name: 'batched-like-statehouse',
      module: 'baselines/batched-insert.ts',
      description:
        'batched-insert with the choices statehouse first made: explicit acks, serial decoding, unnest',
      tuning: { ackAll: false, pipeline: false, encoding: 'arrays' },
    }),
    default: false,
  },
];

async function withDatabase<T>(
  ctx: ScenarioContext,
  database: string,
  work: (client: pg.Client) => Promise<T>,
): Promise<T> {
  const client = new pg.Client({ connectionString: ctx.services.databaseUrl(database) });
  await client.connect();
  try {
    return await work(client);
  } finally {
    await client.end();
  }
}

/** A valid order.placed for the demo saga (same shape as test/helpers/orders.ts). */
function orderPlaced(i: number): string {
  return JSON.stringify({
    type: 'order.placed',
    data: {
      customerId: `c-${i % 997}`,
      items: [{ sku: `book-${i % 50}`, quantity: 1 + (i % 3) }],
      amountCents: 1000 + (i % 9000),
      paymentMethod: 'visa',
      address: '1 Main St',
    },
  });
}

export const ingest: Scenario = {
  name: 'ingest',
  description: 'JetStream → Postgres: statehouse ingest vs hand-written consumers',
  defaults: { events: 50_000, entities: 1000 },
  variants: INGEST_BASELINES.map((b) => ({ name: b.name, description: b.description, default: b.default })),
  async run(ctx) {
    const { services, options, runId, progress } = ctx;
    const baselines = INGEST_BASELINES.filter((b) =>
      options.variants ? options.variants.includes(b.name) : b.default,
    );
    const prefix = `${runId}.`;
    const stream = `${runId.toUpperCase()}_INGEST`;
    const subjects = new WorkflowRegistry(workflows, { subjectPrefix: prefix }).subjects;
    await services.createStream(stream, subjects);
    progress(`ingest: publishing ${options.events} events over ${options.entities} entities to ${stream}…`);
    const published = await services.publish(options.events, (i) => ({
      subject: `${prefix}orders.o-${i % options.entities}.placed`,
      id: `${runId}-${i}`,
      body: orderPlaced(i),
    }));
    progress(`ingest: published at ${Math.round(published.perSecond)} msg/s (async JetStream publish)`);

    const maxAckPending = options.batchSize * 4;
    const firstSeq = published.lastSeq - options.events + 1;
    const runs = new Map<string, WorkerRun[]>();
    for (let round = 0; round < options.repeat; round++) {
      for (const variant of [STATEHOUSE, ...baselines]) {
        const events = Math.min(options.events, variant.maxEvents ?? options.events);
        const database = `${runId}_${variant.name.replace(/-/g, '_')}_${round}`;
        await services.createDatabase(database);
        if (variant.prepare) await withDatabase(ctx, database, variant.prepare);
        const input: IngestInput = {
          databaseUrl: services.databaseUrl(database),
          natsUrl: services.natsUrl,
          stream,
          consumer: `${runId}-${variant.name}-${round}`,
          emitStream: services.trackStream(`${runId.toUpperCase()}_EMITTED`),
          subjectPrefix: prefix,
          lastSeq: firstSeq + events - 1,
          batchSize: options.batchSize,
          maxAckPending,
          tuning: { ackAll: true, pipeline: true, encoding: 'json', ...variant.tuning },
        };
        const run = await measuredRun(ctx, {
          announce: `ingest: ${variant.name}${options.repeat > 1 ? ` (round ${round + 1})` : ''}…`,
          database,
          module: variant.module,
          input,
          timeoutMs: Math.max(120_000, options.events * 5),
          profileName: `ingest-${variant.name}-${runId}-${round}`,
        });
        const { stored, quarantined } = await withDatabase(ctx, database, variant.count);
        // A consumer stops at the commit holding its last message; one timed over fewer
        // messages may have stored part of the next batch too.
        if (stored < events || (variant.maxEvents === undefined && stored !== events) || quarantined !== 0) {
          throw new Error(
            `${variant.name} stored ${stored} events and quarantined ${quarantined}; expected ${events} and 0`,
          );
        }
        progress(`ingest: ${variant.name}: ${Math.round(rateOf(run))} events/s`);
        runs.set(variant.name, [...(runs.get(variant.name) ?? []), run]);
        await services.dropDatabase(database);
      }
    }

    const figures = (name: string): Figures => figuresOf(name, medianRun(runs.get(name) ?? []));
    const sh = figures(STATEHOUSE.name);
    const rows = baselines.map(
      (b): ResultRow => ({
        scenario: 'ingest',
        baseline: b.name,
        unit: 'events/s',
        higherIsBetter: true,
        statehouse: sh,
        baselineFigures: figures(b.name),
        ...(b.target !== undefined ? { target: b.target } : {}),
      }),
    );
    return {
      rows,
      settings: {
        events: options.events,
        entities: options.entities,
        batchSize: options.batchSize,
        maxAckPending,
        statehouseFlushIntervalMs: Number(sh.notes.flushIntervalMs ?? Number.NaN),
        statehousePoolSize: Number(sh.notes.poolSize ?? Number.NaN),
        publishPerSecond: Math.round(published.perSecond),
        payloadBytes: Buffer.byteLength(orderPlaced(0)),
        naiveEvents: Math.min(options.events, NAIVE_MAX_EVENTS),
        repeat: options.repeat,
      },
    };
  },
};
