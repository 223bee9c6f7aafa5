import { assign, setup } from 'xstate';
import { z } from 'zod';
import { chargePayment, reserveStock, shipOrder } from '../handlers/index.ts';
import { compensate, defineWorkflow, emitEvent, runHandler } from '../src/index.ts';

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
  | { type: 'reserveStock.compensated' | 'chargePayment.compensated'; data: null }
  | {
      type: 'reserveStock.compensationFailed' | 'chargePayment.compensationFailed';
      data: { message: string };
    };

/**
 * The order saga: reserve stock → charge payment → ship. When a step fails for good,
 * the steps already done are undone in reverse order; if an undo fails too, the order
 * waits for a person in `needsAttention`.
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
      entry: runHandler(reserveStock, ({ context }) => ({
        orderId: context.orderId,
        items: context.order!.items,
      })),
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
      entry: runHandler(chargePayment, ({ context }) => ({
        orderId: context.orderId,
        amountCents: context.order!.amountCents,
        paymentMethod: context.order!.paymentMethod,
      })),
      on: {
        'chargePayment.done': { target: 'shipping', actions: assign({ charge: ({ event }) => event.data }) },
        'chargePayment.failed': {
          target: 'compensating.releasingStock',
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
          target: 'compensating.refundingPayment',
          actions: assign({ failure: ({ event }) => event.data.message }),
        },
      },
    },
    compensating: {
      tags: ['compensating'],
      initial: 'releasingStock',
      states: {
        refundingPayment: {
          entry: compensate(chargePayment, ({ context }) => ({
            input: {
              orderId: context.orderId,
              amountCents: context.order!.amountCents,
              paymentMethod: context.order!.paymentMethod,
            },
            result: context.charge!,
          })),
          on: {
            'chargePayment.compensated': 'releasingStock',
            'chargePayment.compensationFailed': '#order.needsAttention',
          },
        },
        releasingStock: {
          entry: compensate(reserveStock, ({ context }) => ({
            input: { orderId: context.orderId, items: context.order!.items },
            result: context.reservation!,
          })),
          on: {
            'reserveStock.compensated': '#order.cancelled',
            'reserveStock.compensationFailed': '#order.needsAttention',
          },
        },
      },
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
    needsAttention: { tags: ['needs-attention'] },
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
