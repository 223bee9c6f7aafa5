import { afterEach, describe, expect, it } from 'vitest';
import {
  callDemoService,
  DEMO_SERVICE_LATENCY_VARIABLE,
  demoServiceLatencyMs,
} from '../handlers/demo-service.ts';
import { reserveStock } from '../handlers/index.ts';
import type { HandlerContext } from '../src/jobs/index.ts';
import { createLogger } from '../src/shared/logger.ts';

const ctx = (signal = new AbortController().signal): HandlerContext => ({
  idempotencyKey: 'order:o-1:1',
  attempt: 1,
  machine: 'order',
  entityId: 'o-1',
  log: createLogger('silent', { service: 'test' }),
  signal,
});

describe('the demo services’ simulated latency', () => {
  afterEach(() => {
    delete process.env[DEMO_SERVICE_LATENCY_VARIABLE];
  });

  it('answers at once when unset, and after the configured time when set', async () => {
    expect(demoServiceLatencyMs()).toBe(0);
    process.env[DEMO_SERVICE_LATENCY_VARIABLE] = '40';
    const started = performance.now();
    const result = await reserveStock.run({ orderId: 'o-1', items: [{ sku: 'book-1', quantity: 1 }] }, ctx());
    expect(performance.now() - started).toBeGreaterThanOrEqual(39);
    expect(result).toEqual({ reservationId: 'res-order:o-1:1' });
  });

  it('stops waiting when the job is aborted', async () => {
    process.env[DEMO_SERVICE_LATENCY_VARIABLE] = '60000';
    const abort = new AbortController();
    const call = callDemoService(abort.signal);
    abort.abort(new Error('timed out'));
    await expect(call).rejects.toThrow('timed out');
  });

  it('refuses a value that is not whole milliseconds, naming the variable', () => {
    for (const bad of ['fast', '-5', '1.5', '100000']) {
      process.env[DEMO_SERVICE_LATENCY_VARIABLE] = bad;
      expect(() => demoServiceLatencyMs()).toThrow(
        `DEMO_SERVICE_LATENCY_MS must be a whole number of milliseconds from 0 to 60000; it is "${bad}"`,
      );
    }
  });
});
