import { chargePayment } from './charge-payment.ts';
import { demoServiceLatencyMs } from './demo-service.ts';
import { reserveStock } from './reserve-stock.ts';
import { shipOrder } from './ship-order.ts';

export { chargePayment, reserveStock, shipOrder };

// A mistyped latency stops the engine at start, not each order at its first call.
demoServiceLatencyMs();

/** Every handler the shipped machines use, for the engine to register. */
export const handlers = [reserveStock, chargePayment, shipOrder];
