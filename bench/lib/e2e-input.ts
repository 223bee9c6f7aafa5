import { jetstream } from '@nats-io/jetstream';
import { connect, headers, type NatsConnection } from '@nats-io/transport-node';
import { z } from 'zod';

/** What both e2e consumers get: where to run, how many orders, and how to publish them. */
export const e2eInput = z.object({
  databaseUrl: z.string().min(1),
  natsUrl: z.string().min(1),
  /** Names of this run: the stream, the emitted-events stream, the consumer, the subject prefix. */
  stream: z.string().min(1),
  emitStream: z.string().min(1),
  consumer: z.string().min(1),
  prefix: z.string().min(1),
  orders: z.number().int().positive(),
  /** Engine processes (statehouse only). */
  processes: z.number().int().min(1).max(8).default(1),
  /** `throughput`: publish as fast as NATS takes them; `latency`: `rate` orders/s. */
  mode: z.enum(['throughput', 'latency']).default('throughput'),
  rate: z.number().positive().default(100),
  /** How long each demo handler's service call takes (DEMO_SERVICE_LATENCY_MS), both designs alike. */
  handlerMs: z.number().int().min(0).default(0),
  /** Write a CPU profile of each engine process (its whole life) into this folder. */
  engineProfileDir: z.string().optional(),
});
export type E2eInput = z.infer<typeof e2eInput>;

/** The demo order everyone publishes: the happy path, reserve → charge → ship. */
function orderMessage(prefix: string, i: number) {
  const id = `o-${i}`;
  return {
    id,
    subject: `${prefix}orders.${id}.placed`,
    body: JSON.stringify({
      type: 'order.placed',
      data: {
        customerId: `c-${i % 100}`,
        items: [{ sku: `book-${i % 50}`, quantity: 1 + (i % 3) }],
        amountCents: 1000 + i,
        paymentMethod: 'visa',
        address: `${i} Main St`,
      },
    }),
  };
}

/**
 * Publishes the orders (all at once, at most 500 awaiting their acks, or paced at `rate`/s)
 * and returns each order's publish time (epoch ms) by order id.
 */
export async function publishOrders(
  input: E2eInput,
): Promise<{ sentAt: Map<string, number>; perSecond: number }> {
  const nc: NatsConnection = await connect({ servers: input.natsUrl, name: 'statehouse-bench-publisher' });
  const js = jetstream(nc);
  const encoder = new TextEncoder();
  const sentAt = new Map<string, number>();
  const started = performance.now();
  const send = async (i: number) => {
    const m = orderMessage(input.prefix, i);
    const h = headers();
    h.set('Nats-Msg-Id', `${input.prefix}${m.id}`);
    sentAt.set(m.id, Date.now());
    await js.publish(m.subject, encoder.encode(m.body), { headers: h });
  };
  try {
    if (input.mode === 'latency') {
      const pending: Promise<void>[] = [];
      for (let i = 0; i < input.orders; i++) {
        const wait = started + (i * 1000) / input.rate - performance.now();
        if (wait > 0) await new Promise((r) => setTimeout(r, wait));
        pending.push(send(i));
      }
      await Promise.all(pending);
    } else {
      let next = 0;
      const lane = async () => {
        while (next < input.orders) await send(next++);
      };
      await Promise.all(Array.from({ length: Math.min(500, input.orders) }, lane));
    }
  } finally {
    await nc.drain();
  }
  return { sentAt, perSecond: input.orders / ((performance.now() - started) / 1000) };
}

/** Polls `count` until it reaches `total`, reporting progress; gives up after `timeoutMs`. */
export async function waitForAll(
  total: number,
  count: () => Promise<number>,
  progress: (n: number) => void,
  timeoutMs: number,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let seen = 0;
  while (seen < total) {
    if (Date.now() > deadline) throw new Error(`only ${seen} of ${total} orders finished in ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 20));
    const n = await count();
    if (n > seen) progress(n - seen);
    seen = n;
  }
}
