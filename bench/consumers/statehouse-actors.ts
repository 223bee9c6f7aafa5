// statehouse's side of the "actors" scenario, in two modes.
//
// throughput: the events are already stored (appendEvents, before the clock); an engine
// with only the dispatch part on, default dispatcher settings, is timed from start until
// every ledger entity has applied all its events.
//
// latency: a full engine (ingest + dispatch) runs while this process publishes ledger
// entries to NATS at a steady rate; each event's latency is from just before its publish
// until a poll of the entities table first sees its version applied (committed).
import { jetstream } from '@nats-io/jetstream';
import { connect, headers } from '@nats-io/transport-node';
import pg from 'pg';
import { z } from 'zod';
import type { Config } from '../../src/config/index.ts';
import { Engine } from '../../src/engine/index.ts';
import { ledgerWorkflow } from '../../test/fixtures/ledger-app.ts';
import { benchEngineConfig } from '../lib/engine-config.ts';
import { defineTask, type RunClock } from '../lib/task.ts';

export const SCHEMA = 'statehouse';
export const MACHINE = 'ledger';
/**
 * Throughput runs first apply `warmupEvents` stored for this machine (the same machine under
 * another name), untimed: what is measured is the steady state, not V8 compiling the code.
 */
export const WARMUP_MACHINE = 'ledger-warmup';

export const actorsInput = z.object({
  databaseUrl: z.string().min(1),
  natsUrl: z.string().min(1),
  stream: z.string().min(1),
  consumer: z.string().min(1),
  emitStream: z.string().min(1),
  subjectPrefix: z.string(),
  /** Events stored (throughput) or to publish (latency), spread round-robin over the entities. */
  events: z.number().int().positive(),
  entities: z.number().int().positive(),
  /** Entities per transaction and loops side by side (statehouse's dispatcher defaults). */
  batchSize: z.number().int().positive(),
  concurrency: z.number().int().positive(),
  mode: z.enum(['throughput', 'latency']),
  /** latency: events per second to publish. */
  rate: z.number().positive().optional(),
  /**
   * latency: events published first at the same rate and left out of the figures;
   * throughput: events stored for WARMUP_MACHINE, applied before the clock starts.
   */
  warmupEvents: z.number().int().nonnegative().default(0),
  /** latency: how often the entities table is polled for applied versions. */
  pollMs: z.number().positive().default(5),
});
export type ActorsInput = z.infer<typeof actorsInput>;

export const entityId = (i: number, entities: number) => `l-${i % entities}`;
const entryBody = (n: number) => JSON.stringify({ type: 'ledger.entry', data: { n } });

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export default defineTask({
  input: actorsInput,
  async run(input, clock) {
    const config = benchEngineConfig(input, {
      dispatcher: { batchSize: input.batchSize, concurrency: input.concurrency },
    });
    const latency = input.mode === 'latency';
    if (!latency && input.warmupEvents > 0) await warmUp(input, config);
    const engine = await Engine.create({
      config,
      databaseUrl: input.databaseUrl,
      natsUrl: input.natsUrl,
      workflows: [ledgerWorkflow({ guardThrows: false })],
      handlers: [],
      parts: { ingest: latency, dispatch: true, jobs: false, outbox: false },
    });
    clock.notes.dispatchBatchSize = config.dispatcher.batchSize;
    clock.notes.dispatchConcurrency = config.dispatcher.concurrency;
    clock.notes.poolSize = config.database.poolSize;
    // The harness's own connection for watching progress (not the engine's pool).
    const watch = new pg.Client({ connectionString: input.databaseUrl, application_name: 'bench-watch' });
    await watch.connect();
    await watch.query(`set search_path = ${SCHEMA}`);
    try {
      if (latency) await measureLatency(input, engine, watch, clock);
      else await measureThroughput(input, engine, watch, clock);
    } finally {
      await engine.stop({ graceMs: 1000 });
      await watch.end();
    }
  },
});

/** Applies the warm-up machine's stored events with a dispatch-only engine of its own. */
async function warmUp(input: ActorsInput, config: Config): Promise<void> {
  const engine = await Engine.create({
    config,
    databaseUrl: input.databaseUrl,
    natsUrl: input.natsUrl,
    workflows: [ledgerWorkflow({ guardThrows: false, name: WARMUP_MACHINE })],
    handlers: [],
    parts: { ingest: false, dispatch: true, jobs: false, outbox: false },
  });
  const watch = new pg.Client({ connectionString: input.databaseUrl, application_name: 'bench-warmup' });
  await watch.connect();
  try {
    await engine.start();
    for (;;) {
      const { rows } = await watch.query<{ n: number }>(
        `select count(*)::int as n from ${SCHEMA}.entities where machine = $1 and applied_version < last_version`,
        [WARMUP_MACHINE],
      );
      if (rows[0]?.n === 0) break;
      await sleep(20);
    }
  } finally {
    await engine.stop({ graceMs: 1000 });
    await watch.end();
  }
}

async function measureThroughput(
  input: ActorsInput,
  engine: Engine,
  watch: pg.Client,
  clock: RunClock,
): Promise<void> {
  // Before the clock: every stored event unapplied, through the dispatcher's own index.
  const total = input.events;
  const { rows: backlog } = await watch.query<{ n: number }>(
    `select coalesce(sum(last_version - applied_version), 0)::int as n from entities
     where pending_since is not null and status <> 'failed' and applied_version < last_version
       and machine = $1`,
    [MACHINE],
  );
  if (backlog[0]?.n !== total) throw new Error(`expected ${total} pending events before the start`);
  // The baseline connects before its clock starts; so do the dispatcher's pooled connections.
  await Promise.all(
    Array.from({ length: input.concurrency }, async () => {
      const client = await engine.pool.connect();
      return client;
    }),
  ).then((clients) => {
    for (const client of clients) client.release();
  });
  // Watching costs the Postgres being measured, which the baseline, knowing when its own
  // loop is done, does not pay: a probe of the whole queue every few milliseconds took
  // 2–3 µs of Postgres per transition (it walks the index entries the run leaves dead). So
  // the run is followed through one of the entities queued last (a primary-key lookup;
  // one append transaction queues many at the same time): the dispatcher claims in queue
  // order, so once it is applied the rest is nearly done; then the queue itself is probed
  // until it is empty, and for a failed entity.
  const { rows: queuedLast } = await watch.query<{ id: string }>(
    `select entity_id as id from entities
     where pending_since is not null and status <> 'failed' and machine = $1
     order by pending_since desc limit 1`,
    [MACHINE],
  );
  const lastSql = `select applied_version >= last_version or status = 'failed' as done
     from entities where machine = $1 and entity_id = $2`;
  const lastApplied = async () =>
    (await watch.query<{ done: boolean }>(lastSql, [MACHINE, queuedLast[0]!.id])).rows[0]?.done ?? true;
  const anyLeftSql = `select exists (select 1 from entities
       where pending_since is not null and status <> 'failed' and applied_version < last_version
         and machine = $1) as left,
       exists (select 1 from entities where machine = $1 and status = 'failed') as failed`;
  const anyLeft = async () => {
    const row = (await watch.query<{ left: boolean; failed: boolean }>(anyLeftSql, [MACHINE])).rows[0];
    if (row?.failed) throw new Error('an entity failed');
    return row?.left ?? false;
  };
  await clock.start();
  await engine.start();
  // Often enough that the end of a one-second run is seen within a few milliseconds.
  while (!(await lastApplied())) await sleep(input.pollMs);
  while (await anyLeft()) await sleep(input.pollMs);
  clock.progress(total);
  await clock.finish();
}

async function measureLatency(
  input: ActorsInput,
  engine: Engine,
  watch: pg.Client,
  clock: RunClock,
): Promise<void> {
  const rate = input.rate ?? 1000;
  const nc = await connect({ servers: input.natsUrl, name: 'bench-publisher' });
  const js = jetstream(nc);
  const encoder = new TextEncoder();
  const total = input.warmupEvents + input.events;
  /** Per entity: versions published and not yet seen applied, with their publish times. */
  const outstanding = new Map<string, Array<{ version: number; at: number; measured: boolean }>>();
  const published = new Map<string, number>();
  let seen = 0;
  let publishErrors = 0;
  const inFlight = new Set<Promise<unknown>>();

  await clock.start();
  await engine.start();
  const t0 = performance.now();
  let publishedMs = 0;
  const publisher = (async () => {
    let i = 0;
    while (i < total) {
      const due = Math.min(total, Math.floor(((performance.now() - t0) / 1000) * rate) + 1);
      for (; i < due; i++) {
        const id = entityId(i, input.entities);
        const version = (published.get(id) ?? 0) + 1;
        published.set(id, version);
        const list = outstanding.get(id) ?? [];
        list.push({ version, at: performance.now(), measured: i >= input.warmupEvents });
        outstanding.set(id, list);
        const h = headers();
        h.set('Nats-Msg-Id', `${input.consumer}-${i}`);
        const p = js
          .publish(`${input.subjectPrefix}ledger.${id}.entry`, encoder.encode(entryBody(i)), { headers: h })
          .catch(() => {
            publishErrors++;
          });
        inFlight.add(p);
        p.finally(() => inFlight.delete(p));
      }
      await sleep(1);
    }
    publishedMs = performance.now() - t0;
  })();

  const sql = `select entity_id as id, applied_version as v from entities where machine = $1 and entity_id = any($2::text[])`;
  let publishing = true;
  publisher.finally(() => {
    publishing = false;
  });
  while (publishing || outstanding.size > 0) {
    await sleep(input.pollMs);
    if (outstanding.size === 0) continue;
    const ids = [...outstanding.keys()];
    const { rows } = await watch.query<{ id: string; v: number }>(sql, [MACHINE, ids]);
    const now = performance.now();
    let done = 0;
    for (const row of rows) {
      const list = outstanding.get(row.id);
      if (!list) continue;
      while (list.length > 0 && list[0]!.version <= row.v) {
        const e = list.shift()!;
        done++;
        if (e.measured) clock.latency(now - e.at);
      }
      if (list.length === 0) outstanding.delete(row.id);
    }
    if (done > 0) clock.progress(done);
    seen += done;
    if (publishErrors > 0) throw new Error(`${publishErrors} publishes failed`);
    if (now - t0 > (total / rate) * 1000 + 60_000) throw new Error(`only ${seen} of ${total} applied`);
  }
  // First publish → last transition seen committed, the engine's start-up left out.
  clock.notes.appliedPerSecond = Math.round(seen / ((performance.now() - t0) / 1000));
  await Promise.all(inFlight);
  clock.notes.publishedPerSecond = Math.round(total / (publishedMs / 1000));
  await clock.finish();
  await nc.close();
}
