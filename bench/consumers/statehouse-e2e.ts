// The shipped order saga end to end: `count` engine processes (`statehouse start` with the
// demo machines and handlers), orders published to NATS, timed until every order is in its
// final state. Afterwards (not timed) it checks that each order's events are exactly the
// saga's, in order, once each: per-entity order and exactly-once state, with any number of
// processes.
import pg from 'pg';
import { DEMO_SERVICE_LATENCY_VARIABLE } from '../../handlers/demo-service.ts';
import { e2eInput, publishOrders, waitForAll } from '../lib/e2e-input.ts';
import { startEngines } from '../lib/engine-processes.ts';
import { cpuSnapshot } from '../lib/proc.ts';
import { defineTask } from '../lib/task.ts';

const SAGA = ['order.placed', 'reserveStock.done', 'chargePayment.done', 'shipOrder.done'];

export default defineTask({
  input: e2eInput,
  async run(input, clock) {
    const engines = await startEngines(
      input.processes,
      {
        DATABASE_URL: input.databaseUrl,
        NATS_URL: input.natsUrl,
        STATEHOUSE_STREAM: input.stream,
        STATEHOUSE_EMIT_STREAM: input.emitStream,
        STATEHOUSE_CONSUMER: input.consumer,
        STATEHOUSE_SUBJECT_PREFIX: input.prefix,
        [DEMO_SERVICE_LATENCY_VARIABLE]: String(input.handlerMs),
      },
      input.engineProfileDir,
    );
    const db = new pg.Client({ connectionString: input.databaseUrl, application_name: 'bench-observer' });
    await db.connect();
    try {
      const done = async () => {
        const { rows } = await db.query<{ n: number }>(
          "select count(*)::int as n from statehouse.entities where machine = 'order' and status = 'done'",
        );
        return rows[0]?.n ?? 0;
      };
      const cpu0 = cpuSnapshot(engines.pids);
      await clock.start();
      const published = publishOrders(input);
      await waitForAll(input.orders, done, (n) => clock.progress(n), 600_000);
      const { sentAt, perSecond } = await published;
      if (input.mode === 'latency') {
        // Publish → committed final state, by the entity's last update.
        const { rows } = await db.query<{ id: string; at: Date }>(
          "select entity_id as id, updated_at as at from statehouse.entities where machine = 'order'",
        );
        for (const { id, at } of rows) clock.latency(at.getTime() - (sentAt.get(id) ?? Number.NaN));
      }
      const cpu1 = cpuSnapshot(engines.pids);
      const engineCpu = engines.pids.reduce(
        (sum, pid) => sum + (cpu1.processes.get(pid)?.seconds ?? 0) - (cpu0.processes.get(pid)?.seconds ?? 0),
        0,
      );
      clock.notes.engineNodeCpuSPer1k = Math.round((engineCpu / input.orders) * 1000 * 1e4) / 1e4;
      clock.notes.publishedPerSecond = Math.round(perSecond);
      await clock.finish();

      await verify(db, input.orders);
    } finally {
      await db.end();
      await engines.stop();
    }
  },
});

/** Every order shipped, with exactly the saga's events at versions 1…4, and one emitted event. */
async function verify(db: pg.Client, orders: number): Promise<void> {
  const { rows } = await db.query<{ id: string; state: unknown; types: string[]; versions: number[] }>(
    `select en.entity_id as id, en.state,
            array_agg(ev.type order by ev.version) as types, array_agg(ev.version order by ev.version) as versions
     from statehouse.entities en join statehouse.events ev using (machine, entity_id)
     where en.machine = 'order' group by en.entity_id, en.state`,
  );
  const wrong = rows.filter(
    (r) =>
      r.state !== 'shipped' ||
      r.types.join() !== SAGA.join() ||
      r.versions.join() !== SAGA.map((_, i) => i + 1).join(),
  );
  const { rows: outbox } = await db.query<{ n: number; orders: number }>(
    'select count(*)::int as n, count(distinct entity_id)::int as orders from statehouse.outbox',
  );
  if (rows.length !== orders || wrong.length > 0 || outbox[0]?.n !== orders || outbox[0]?.orders !== orders) {
    throw new Error(
      `e2e check failed: ${rows.length} of ${orders} orders stored, ${wrong.length} with the wrong history (e.g. ${JSON.stringify(wrong[0])}), ${outbox[0]?.n} emitted events for ${outbox[0]?.orders} orders`,
    );
  }
}
