// The Postgres side of ingest and job outcomes, without NATS or a consumer around it:
// how fast statehouse's appendEvents stores batches (and single events) compared with the
// baselines' statements, and how much Postgres CPU each costs. Used for the "what limits
// each path" part of docs/performance.md.
//
//   node_modules/.bin/tsx bench/experiments/store.ts [--events 20000]
//
// Creates a scratch database (dropped at the end) next to the one DATABASE_URL / the local
// server gives.
import { parseArgs } from 'node:util';
import { z } from 'zod';
import { createPool, migrate, withTransaction } from '../../src/db/index.ts';
import { appendEvents, type NewEvent } from '../../src/store/index.ts';
import type { EventRow } from '../baselines/rows.ts';
import { arrayQuery, createBaselineTables, jsonQuery } from '../baselines/schema.ts';
import { cpuDelta, cpuSnapshot } from '../lib/proc.ts';
import { BenchServices } from '../lib/services.ts';
import { percentile } from '../lib/stats.ts';

const { values } = parseArgs({
  options: { events: { type: 'string', default: '20000' } },
});
const EVENTS = z.coerce.number().int().min(500).max(1_000_000).parse(values.events);
const BATCH = 500;
const ENTITIES = 1000;

const data = (i: number) => ({
  customerId: `c-${i % 997}`,
  items: [{ sku: `book-${i % 50}`, quantity: 1 + (i % 3) }],
  amountCents: 1000 + (i % 9000),
  paymentMethod: 'visa',
  address: '1 Main St',
});
const event = (i: number, prefix: string): NewEvent => ({
  machine: 'order',
  entityId: `o-${i % ENTITIES}`,
  type: 'order.placed',
  data: data(i),
  messageId: `${prefix}-${i}`,
  source: 'nats',
  subject: `x.orders.o-${i % ENTITIES}.placed`,
  natsStream: 'S',
  natsSeq: i + 1,
  publishedAt: new Date(),
});

const services = await BenchServices.resolve();
const database = `${BenchServices.runId()}_store`;
try {
  await services.createDatabase(database);
  const url = services.databaseUrl(database);
  const pool = createPool({ url, schema: 'statehouse', max: 10 });
  await migrate(pool, 'statehouse');
  await pool.query('select 1');
  await withTransaction(pool, (c) => createBaselineTables(c));
  await pool.query("insert into ingest_checkpoints (stream, last_seq) values ('S', 0)");

  const measure = async (name: string, items: number, work: () => Promise<number[]>) => {
    const before = cpuSnapshot();
    const t = performance.now();
    const times = await work();
    const seconds = (performance.now() - t) / 1000;
    const pids = await services.backendPids([database]);
    const cpu = cpuDelta(before, cpuSnapshot(), pids);
    console.log(
      `${name.padEnd(58)} ${String(Math.round(items / seconds)).padStart(7)}/s  ` +
        `p50 ${percentile(times, 50).toFixed(1).padStart(6)} ms  ` +
        `pg CPU ${((cpu.postgresBackends / items) * 1e6).toFixed(0).padStart(5)} µs/item`,
    );
  };
  const batches = async (fn: (from: number) => Promise<void>) => {
    const times: number[] = [];
    for (let from = 0; from < EVENTS; from += BATCH) {
      const t = performance.now();
      await fn(from);
      times.push(performance.now() - t);
    }
    return times;
  };

  console.log(
    `${EVENTS} events in batches of ${BATCH} over ${ENTITIES} entities, one transaction per batch:`,
  );
  await measure('statehouse: appendEvents + checkpoint + notify', EVENTS, () =>
    batches((from) =>
      withTransaction(pool, async (c) => {
        const events = Array.from({ length: BATCH }, (_, k) => event(from + k, 'sh'));
        await appendEvents(c, events, { notifyChannel: 'statehouse.dispatch' });
        await c.query("update ingest_checkpoints set last_seq = $1 where stream = 'S'", [from + BATCH]);
      }),
    ),
  );
  const rows = (from: number, prefix: string) =>
    Array.from({ length: BATCH }, (_, k) => {
      const i = from + k;
      const row: EventRow = [
        `${prefix}-${i}`,
        `o-${i % ENTITIES}`,
        'order.placed',
        data(i),
        `x.orders.o-${i % ENTITIES}.placed`,
        i + 1,
        new Date(),
      ];
      return row;
    });
  await measure('baseline: unnest, one array per column', EVENTS, () =>
    batches(async (from) => {
      await pool.query(arrayQuery(rows(from, 'un')));
    }),
  );
  await measure('baseline: one JSON document of positional arrays', EVENTS, () =>
    batches(async (from) => {
      await pool.query(jsonQuery(rows(from, 'js')));
    }),
  );

  console.log('\nsingle-event appends, one transaction each (the JobRunner outcome path):');
  for (const concurrency of [1, 10]) {
    for (const notify of [true, false]) {
      const n = 1000;
      let next = 0;
      await measure(
        `appendEvents of 1 event, ${concurrency} at a time, notify ${notify ? 'on' : 'off'}`,
        n,
        async () => {
          const times: number[] = [];
          await Promise.all(
            Array.from({ length: concurrency }, async () => {
              while (next < n) {
                const i = next++;
                const t = performance.now();
                await withTransaction(pool, (c) =>
                  appendEvents(
                    c,
                    [
                      {
                        machine: 'bench',
                        entityId: `e-${i % ENTITIES}`,
                        type: 'benchNoop.done',
                        data: null,
                        messageId: `one-${concurrency}-${notify}-${i}`,
                        source: 'handler',
                      },
                    ],
                    notify ? { notifyChannel: 'statehouse.dispatch' } : {},
                  ),
                );
                times.push(performance.now() - t);
              }
            }),
          );
          return times;
        },
      );
    }
  }
  await pool.end();
} finally {
  await services.stop();
}
