// Baseline "naive" for e2e: the design many teams start with. One message at a time: take
// it, INSERT the event and the order in one transaction and commit, then run the handlers
// inline (the same demo handlers statehouse runs), store the final state (a second commit),
// publish the outcome to NATS, ack. No retries across crashes, no compensation, no per-entity
// concurrency control: what it gives up is what statehouse is for.
import {
  AckPolicy,
  DeliverPolicy,
  jetstream,
  jetstreamManager,
  RetentionPolicy,
  StorageType,
} from '@nats-io/jetstream';
import { connect, headers } from '@nats-io/transport-node';
import pg from 'pg';
import { DEMO_SERVICE_LATENCY_VARIABLE } from '../../handlers/demo-service.ts';
import { chargePayment, reserveStock, shipOrder } from '../../handlers/index.ts';
import type { HandlerContext } from '../../src/jobs/index.ts';
import { createLogger } from '../../src/shared/logger.ts';
import { e2eInput, publishOrders, waitForAll } from '../lib/e2e-input.ts';
import { defineTask } from '../lib/task.ts';

const SCHEMA_SQL = `
create table naive_events (
  id bigint generated always as identity primary key,
  message_id text not null unique,
  order_id text not null,
  type text not null,
  data jsonb not null,
  recorded_at timestamptz not null default now()
);
create table naive_orders (
  id text primary key,
  state text not null,
  context jsonb not null,
  updated_at timestamptz not null default now()
);`;

const log = createLogger('silent', { service: 'bench-naive-e2e' });

interface PlacedOrder {
  items: Array<{ sku: string; quantity: number }>;
  amountCents: number;
  paymentMethod: string;
  address: string;
}

export default defineTask({
  input: e2eInput,
  async run(input, clock) {
    // The same simulated service latency the engine's handlers get.
    process.env[DEMO_SERVICE_LATENCY_VARIABLE] = String(input.handlerMs);
    const db = new pg.Client({ connectionString: input.databaseUrl, application_name: 'bench-naive-e2e' });
    await db.connect();
    await db.query(SCHEMA_SQL);
    const nc = await connect({ servers: input.natsUrl, name: 'bench-naive-e2e' });
    const jsm = await jetstreamManager(nc);
    const js = jetstream(nc);
    for (const [name, subject] of [
      [input.stream, `${input.prefix}orders.>`],
      [input.emitStream, `${input.prefix}order-events.>`],
    ] as const) {
      await jsm.streams.add({
        name,
        subjects: [subject],
        storage: StorageType.File,
        retention: RetentionPolicy.Limits,
      });
    }
    await jsm.consumers.add(input.stream, {
      durable_name: input.consumer,
      ack_policy: AckPolicy.Explicit,
      deliver_policy: DeliverPolicy.All,
      ack_wait: 30_000_000_000,
    });
    const consumer = await js.consumers.get(input.stream, input.consumer);
    const ctx = (key: string, entityId: string): HandlerContext => ({
      idempotencyKey: key,
      attempt: 1,
      machine: 'order',
      entityId,
      log,
      signal: AbortSignal.timeout(30_000),
    });

    let finished = 0;
    const work = (async () => {
      const messages = await consumer.consume({ max_messages: 100 });
      for await (const msg of messages) {
        const orderId = msg.subject.split('.')[2]!;
        const event = msg.json<{ type: string; data: PlacedOrder }>();
        const order = event.data;
        await db.query('begin');
        await db.query(
          'insert into naive_events (message_id, order_id, type, data) values ($1, $2, $3, $4) on conflict do nothing',
          [msg.headers?.get('Nats-Msg-Id') ?? `${input.stream}:${msg.seq}`, orderId, event.type, event.data],
        );
        await db.query(
          `insert into naive_orders (id, state, context) values ($1, 'placed', $2) on conflict (id) do nothing`,
          [orderId, event.data],
        );
        await db.query('commit');
        const reservation = await reserveStock.run(
          { orderId, items: order.items },
          ctx(`${orderId}:1`, orderId),
        );
        const charge = await chargePayment.run(
          { orderId, amountCents: order.amountCents, paymentMethod: order.paymentMethod },
          ctx(`${orderId}:2`, orderId),
        );
        const shipment = await shipOrder.run(
          { orderId, address: order.address, items: order.items },
          ctx(`${orderId}:3`, orderId),
        );
        await db.query(
          `update naive_orders set state = 'shipped', context = context || $2, updated_at = now() where id = $1`,
          [orderId, { reservation, charge, shipment }],
        );
        const h = headers();
        h.set('Nats-Msg-Id', `${orderId}:shipped`);
        await js.publish(
          `${input.prefix}order-events.${orderId}.shipped`,
          JSON.stringify({ type: 'order.shipped', data: shipment }),
          { headers: h },
        );
        msg.ack();
        finished++;
        if (finished >= input.orders) break;
      }
      await messages.close();
    })();

    await clock.start();
    const published = publishOrders(input);
    let reported = 0;
    await waitForAll(
      input.orders,
      async () => finished,
      (n) => {
        reported += n;
        clock.progress(n);
      },
      600_000,
    );
    await work;
    const { sentAt, perSecond } = await published;
    clock.notes.publishedPerSecond = Math.round(perSecond);
    if (input.mode === 'latency') {
      const { rows } = await db.query<{ id: string; at: Date }>(
        'select id, updated_at as at from naive_orders',
      );
      for (const { id, at } of rows) clock.latency(at.getTime() - (sentAt.get(id) ?? Number.NaN));
    }
    await clock.finish();
    const { rows } = await db.query<{ n: number }>(
      "select count(*)::int as n from naive_orders where state = 'shipped'",
    );
    if (rows[0]?.n !== input.orders || reported !== input.orders) {
      throw new Error(`naive e2e finished ${rows[0]?.n} of ${input.orders} orders`);
    }
    await nc.drain();
    await db.end();
  },
});
