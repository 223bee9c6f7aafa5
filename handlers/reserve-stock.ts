import { z } from 'zod';
import { defineHandler, NonRetryableError } from '../src/index.ts';
import { callDemoService } from './demo-service.ts';

export const reserveStockInput = z.object({
  orderId: z.string(),
  items: z.array(z.object({ sku: z.string().min(1), quantity: z.number().int().positive() })).min(1),
});

/**
 * Holds the items of an order in the warehouse. The demo warehouse has everything in
 * stock except SKUs starting with `OOS-`; a real one would be called with
 * `ctx.idempotencyKey` so that a retried request reserves once.
 */
export const reserveStock = defineHandler({
  name: 'reserveStock',
  input: reserveStockInput,
  retry: { limit: 3, delaySeconds: 1, backoff: true },
  timeoutSeconds: 30,
  async run({ items }, ctx) {
    const missing = items.filter((item) => item.sku.startsWith('OOS-')).map((item) => item.sku);
    if (missing.length > 0) throw new NonRetryableError(`out of stock: ${missing.join(', ')}`);
    await callDemoService(ctx.signal);
    return { reservationId: `res-${ctx.idempotencyKey}` };
  },
  async compensate(_input, result, ctx) {
    await callDemoService(ctx.signal);
    ctx.log.info({ reservationId: result.reservationId }, 'released reservation');
  },
});
