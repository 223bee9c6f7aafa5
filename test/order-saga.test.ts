import { jetstreamManager } from '@nats-io/jetstream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { setup } from 'xstate';
import { z } from 'zod';
import { applyEvents } from '../src/actors/index.ts';
import { defineWorkflow, emitEvent, WorkflowRegistry } from '../src/workflows/index.ts';
import { createTestContext, type TestContext, waitFor } from './helpers/context.ts';
import { storedEvent } from './helpers/events.ts';
import { entityRow, eventTypes, orderPlaced } from './helpers/orders.ts';

/** The shipped order saga, end to end through real NATS, Postgres and pg-boss. */
describe('order saga', () => {
  let t: TestContext;
  beforeAll(async () => {
    t = await createTestContext();
    await t.startEngine();
  });
  afterAll(() => t.cleanup());

  const finished = (id: string) =>
    waitFor(`order ${id} to finish`, async () => {
      const row = await entityRow(t.pool, id);
      // Settled: out of the working statuses, and every stored event applied (an undo that
      // fails marks the order needs-attention before the machine has taken the saga's event).
      return row &&
        row.status !== 'active' &&
        row.status !== 'compensating' &&
        row.applied_version === row.last_version
        ? row
        : undefined;
    });

  it('takes an order published with the NATS client to shipped, one event per step', async () => {
    await t.publish(t.subject('orders.o-1.placed'), orderPlaced(), { id: 'o-1-placed' });
    const row = await finished('o-1');
    expect(row.status).toBe('done');
    expect(row.state).toBe('shipped');
    expect(row.applied_version).toBe(4);
    expect(await eventTypes(t.pool, 'o-1')).toEqual([
      'order.placed',
      'reserveStock.done',
      'chargePayment.done',
      'shipOrder.done',
    ]);
    expect(row.snapshot?.context.trackingNumber).toMatch(/^TRK-order-o-1-/);
  });

  it('rejects an order whose stock cannot be reserved, without charging', async () => {
    await t.publish(t.subject('orders.o-2.placed'), orderPlaced({ items: [{ sku: 'OOS-1', quantity: 1 }] }));
    const row = await finished('o-2');
    expect(row.state).toBe('rejected');
    expect(row.snapshot?.context.failure).toMatch(/out of stock: OOS-1/);
    expect(await eventTypes(t.pool, 'o-2')).toEqual(['order.placed', 'reserveStock.failed']);
  });

  it('releases the reserved stock when the payment is declined', async () => {
    await t.publish(t.subject('orders.o-3.placed'), orderPlaced({ paymentMethod: 'card_declined' }));
    const row = await finished('o-3');
    expect(row.state).toBe('cancelled');
    expect(await eventTypes(t.pool, 'o-3')).toEqual([
      'order.placed',
      'reserveStock.done',
      'chargePayment.failed',
      'reserveStock.compensated',
      'saga.compensated',
    ]);
  });

  it('leaves an order whose refund is refused needing attention, with the stock still reserved', async () => {
    await t.publish(
      t.subject('orders.o-5.placed'),
      orderPlaced({ address: 'nowhere', paymentMethod: 'card_refund_blocked' }),
    );
    const row = await finished('o-5');
    expect(row.status).toBe('needs-attention');
    expect(row.state).toBe('needsAttention');
    expect((await eventTypes(t.pool, 'o-5')).slice(3)).toEqual([
      'shipOrder.failed',
      'chargePayment.compensationFailed',
      'saga.compensationFailed',
    ]);
  });

  it('undoes payment, then stock, in reverse order when shipping fails', async () => {
    await t.publish(t.subject('orders.o-4.placed'), orderPlaced({ address: 'nowhere' }));
    const row = await finished('o-4');
    expect(row.state).toBe('cancelled');
    expect(await eventTypes(t.pool, 'o-4')).toEqual([
      'order.placed',
      'reserveStock.done',
      'chargePayment.done',
      'shipOrder.failed',
      'chargePayment.compensated',
      'reserveStock.compensated',
      'saga.compensated',
    ]);
  });
});

describe('emitted events', () => {
  let t: TestContext;
  beforeAll(async () => {
    t = await createTestContext();
  });
  afterAll(() => t.cleanup());

  async function emitted(): Promise<Array<{ subject: string; body: unknown; msgId: string | undefined }>> {
    const jsm = await jetstreamManager(t.nats);
    const info = await jsm.streams.info(t.config.nats.emitStream);
    const out = [];
    for (let seq = info.state.first_seq; seq <= info.state.last_seq; seq++) {
      const m = await jsm.streams.getMessage(t.config.nats.emitStream, { seq });
      if (!m) continue;
      out.push({ subject: m.subject, body: m.json(), msgId: m.header.get('Nats-Msg-Id') });
    }
    return out;
  }

  it('publishes an order’s outcome through the outbox, once, even when the relay repeats itself', async () => {
    await t.startEngine();
    await t.publish(t.subject('orders.e-1.placed'), orderPlaced());
    await t.publish(t.subject('orders.e-2.placed'), orderPlaced({ paymentMethod: 'card_declined' }));
    const out = await waitFor('two emitted events', async () => {
      const list = await emitted().catch(() => []);
      return list.length === 2 ? list : undefined;
    });
    const bySubject = Object.fromEntries(out.map((m) => [m.subject, m.body]));
    expect(bySubject[t.subject('order-events.e-1.shipped')]).toMatchObject({
      type: 'order.shipped',
      data: { trackingNumber: expect.stringMatching(/^TRK-/) },
    });
    expect(bySubject[t.subject('order-events.e-2.cancelled')]).toMatchObject({
      type: 'order.cancelled',
      data: { reason: 'the card was declined' },
    });
    expect(out.every((m) => m.msgId?.startsWith('statehouse-outbox:'))).toBe(true);

    // A relay that died after publishing but before marking the rows sent publishes them
    // again; JetStream drops the repeats by message id.
    await t.pool.query('update outbox set sent_at = null');
    await waitFor('rows sent again', async () => {
      const { rows } = await t.pool.query<{ n: number }>(
        'select count(*)::int as n from outbox where sent_at is null',
      );
      return rows[0]!.n === 0;
    });
    expect(await emitted()).toHaveLength(2);
  });

  it('fails an entity whose machine emits to a subject outside its emits patterns', () => {
    const machine = setup({}).createMachine({
      on: { ping: { actions: emitEvent(() => ({ subject: 'elsewhere.x', type: 'pong' })) } },
    });
    const workflow = defineWorkflow({
      name: 'pinger',
      version: 1,
      machine,
      subjects: 'ping.*.>',
      events: { ping: z.null() },
      emits: 'pongs.>',
    });
    const result = applyEvents(
      new WorkflowRegistry([workflow]),
      { machine: 'pinger', entityId: 'p', machineVersion: null, snapshot: null, appliedVersion: 0 },
      [storedEvent({ machine: 'pinger', entityId: 'p', type: 'ping' })],
    );
    expect(result.status).toBe('failed');
    expect(result.error?.message).toContain(
      'emitted to "elsewhere.x", which none of its emits patterns (pongs.>) covers',
    );
  });
});
