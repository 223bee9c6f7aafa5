import { z } from 'zod';
import { defineHandler, NonRetryableError } from '../src/index.ts';
import { callDemoService } from './demo-service.ts';

export const shipOrderInput = z.object({
  orderId: z.string(),
  address: z.string().min(1),
  items: z.array(z.object({ sku: z.string(), quantity: z.number().int().positive() })),
});

/** Books the parcel with the carrier. The demo carrier does not deliver to `nowhere`. */
export const shipOrder = defineHandler({
  name: 'shipOrder',
  input: shipOrderInput,
  retry: { limit: 3, delaySeconds: 2, backoff: true },
  timeoutSeconds: 60,
  async run({ address }, ctx) {
    if (address === 'nowhere') throw new NonRetryableError('the carrier does not deliver to this address');
    await callDemoService(ctx.signal);
    return { trackingNumber: `TRK-${ctx.idempotencyKey.replaceAll(':', '-')}` };
  },
});
