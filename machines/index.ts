import { orderWorkflow } from './order.ts';

export { orderMachine, orderWorkflow } from './order.ts';

/** The workflows `npm start` serves. */
export const workflows = [orderWorkflow];
