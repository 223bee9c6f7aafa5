import { chargePayment } from './charge-payment.ts';
import { reserveStock } from './reserve-stock.ts';
import { shipOrder } from './ship-order.ts';

export { chargePayment, reserveStock, shipOrder };

/** Every handler the shipped machines use, for the engine to register. */
export const handlers = [reserveStock, chargePayment, shipOrder];
