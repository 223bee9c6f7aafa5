import { z } from 'zod';
import { defineHandler, NonRetryableError } from '../src/index.ts';
import { callDemoService } from './demo-service.ts';

export const chargePaymentInput = z.object({
  orderId: z.string(),
  amountCents: z.number().int().positive(),
  paymentMethod: z.string().min(1),
});

/**
 * Charges the customer. The demo processor declines the payment method `card_declined`
 * (a business outcome: no retry) and accepts any other; it refuses to refund
 * `card_refund_blocked`, which leaves a cancelled order needing attention.
 */
export const chargePayment = defineHandler({
  name: 'chargePayment',
  input: chargePaymentInput,
  retry: { limit: 5, delaySeconds: 1, backoff: true, maxDelaySeconds: 30 },
  timeoutSeconds: 30,
  async run({ amountCents, paymentMethod }, ctx) {
    if (paymentMethod === 'card_declined') throw new NonRetryableError('the card was declined');
    await callDemoService(ctx.signal);
    return { chargeId: `ch-${ctx.idempotencyKey}`, amountCents };
  },
  async compensate({ paymentMethod }, result, ctx) {
    await callDemoService(ctx.signal);
    if (paymentMethod === 'card_refund_blocked') {
      throw new NonRetryableError('the processor refuses refunds to this card; refund by hand, then retry');
    }
    ctx.log.info({ chargeId: result.chargeId, amountCents: result.amountCents }, 'refunded charge');
  },
});
