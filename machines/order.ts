import { assign, setup } from 'xstate';
import { z } from 'zod';
import { chargePayment, reserveStock, shipOrder } from '../handlers/index.ts';
import { compensateCompleted, defineWorkflow, emitEvent, runHandler } from '../src/index.ts';

const item = z.object({ sku: z.string().min(1), quantity: z.number().int().positive() });

export const orderPlaced = z.object({
  customerId: z.string().min(1),
  items: z.array(item).min(1),
  amountCents: z.number().int().positive(),
  paymentMethod: z.string().min(1),
  address: z.string().min(1),
});

type OrderPlaced = z.infer<typeof orderPlaced>;
type Reservation = { reservationId: string };
type Charge = { chargeId: string; amountCents: number };

interface OrderContext {
  orderId: string;
  order?: OrderPlaced;
  reservation?: Reservation;
  charge?: Charge;
  trackingNumber?: string;
  failure?: string;
}

type OrderEvent =
  | { type: 'order.placed'; data: OrderPlaced }
  | { type: 'reserveStock.done'; data: Reservation }
  | { type: 'chargePayment.done'; data: Charge }
  | { type: 'shipOrder.done'; data: { trackingNumber: string } }
  | { type: 'reserveStock.failed' | 'chargePayment.failed' | 'shipOrder.failed'; data: { message: string } }
  | { type: 'saga.compensated'; data: null }
  | { type: 'saga.compensationFailed'; data: { handler: string; error: { message: string } } };

/**
 * The order saga: reserve stock → charge payment → ship. Reserving and charging are
 * compensable steps; when a later step fails for good, `compensateCompleted()` has the
 * engine undo the completed ones in reverse order (refund, then release). If an undo
 * fails for good, the order waits for a person in `needsAttention`; once an operator's
 * retry of that compensation succeeds, the saga finishes and the order is cancelled.
 */
export const orderMachine = setup({
  types: { context: {} as OrderContext, events: {} as OrderEvent, input: {} as { entityId: string } },
}).createMachine({
  id: 'order',
  context: ({ input }) => ({ orderId: input.entityId }),
  initial: 'awaitingOrder',
  states: {
    awaitingOrder: {
      on: {
        'order.placed': { target: 'reservingStock', actions: assign({ order: ({ event }) => event.data }) },
      },
    },
    reservingStock: {
      entry: runHandler(
        reserveStock,
        ({ context }) => ({ orderId: context.orderId, items: context.order!.items }),
        { compensable: true },
      ),
      on: {
        'reserveStock.done': {
          target: 'chargingPayment',
          actions: assign({ reservation: ({ event }) => event.data }),
        },
        'reserveStock.failed': {
          target: 'rejected',
          actions: assign({ failure: ({ event }) => event.data.message }),
        },
      },
    },
    chargingPayment: {
      entry: runHandler(
        chargePayment,
        ({ context }) => ({
          orderId: context.orderId,
          amountCents: context.order!.amountCents,
          paymentMethod: context.order!.paymentMethod,
        }),
        { compensable: true },
      ),
      on: {
        'chargePayment.done': { target: 'shipping', actions: assign({ charge: ({ event }) => event.data }) },
        'chargePayment.failed': {
          target: 'compensating',
          actions: assign({ failure: ({ event }) => event.data.message }),
        },
      },
    },
    shipping: {
      entry: runHandler(shipOrder, ({ context }) => ({
        orderId: context.orderId,
        address: context.order!.address,
        items: context.order!.items,
      })),
      on: {
        'shipOrder.done': {
          target: 'shipped',
          actions: assign({ trackingNumber: ({ event }) => event.data.trackingNumber }),
        },
        'shipOrder.failed': {
          target: 'compensating',
          actions: assign({ failure: ({ event }) => event.data.message }),
        },
      },
    },
    compensating: {
      tags: ['compensating'],
      entry: compensateCompleted(),
      on: {
        'saga.compensated': 'cancelled',
        'saga.compensationFailed': 'needsAttention',
      },
    },
    needsAttention: {
      tags: ['needs-attention'],
      // An operator retried the failed compensation and the rest of the saga went through.
      on: { 'saga.compensated': 'cancelled' },
    },
    // The outcome is announced for other services, through the outbox.
    shipped: {
      type: 'final',
      entry: emitEvent(({ context }) => ({
        subject: `order-events.${context.orderId}.shipped`,
        type: 'order.shipped',
        data: { trackingNumber: context.trackingNumber },
      })),
    },
    rejected: {
      type: 'final',
      entry: emitEvent(({ context }) => ({
        subject: `order-events.${context.orderId}.rejected`,
        type: 'order.rejected',
        data: { reason: context.failure },
      })),
    },
    cancelled: {
      type: 'final',
      entry: emitEvent(({ context }) => ({
        subject: `order-events.${context.orderId}.cancelled`,
        type: 'order.cancelled',
        data: { reason: context.failure },
      })),
    },
  },
});

export const orderWorkflow = defineWorkflow({
  name: 'order',
  version: 1,
  machine: orderMachine,
  subjects: 'orders.*.>',
  events: { 'order.placed': orderPlaced },
  emits: 'order-events.*.>',
});
