import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestContext, type TestContext, waitFor } from './helpers/context.ts';
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
      return row && row.status !== 'active' && row.status !== 'compensating' ? row : undefined;
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
    ]);
  });
});
