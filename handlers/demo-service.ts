import { setTimeout as sleep } from 'node:timers/promises';
import { z } from 'zod';
import { ConfigError } from '../src/index.ts';

/**
 * The demo handlers stand in for calls to other services (a warehouse, a payment
 * processor, a carrier), which take time to answer. `DEMO_SERVICE_LATENCY_MS` makes each
 * demo call take that long, so the demo (and `npm run bench -- e2e --handler-ms N`) can show
 * the saga with realistic side effects; it is 0, instant, when unset.
 */
export const DEMO_SERVICE_LATENCY_VARIABLE = 'DEMO_SERVICE_LATENCY_MS';

const latency = z.coerce.number().int().min(0).max(60_000);
let cached: { raw: string; ms: number } | undefined;

/** The configured latency; throws a message naming the variable when it is not a valid number. */
export function demoServiceLatencyMs(): number {
  const raw = process.env[DEMO_SERVICE_LATENCY_VARIABLE] ?? '0';
  if (cached?.raw !== raw) {
    const parsed = latency.safeParse(raw.trim() === '' ? '0' : raw);
    if (!parsed.success) {
      throw new ConfigError(
        `${DEMO_SERVICE_LATENCY_VARIABLE} must be a whole number of milliseconds from 0 to 60000; it is "${raw}"`,
      );
    }
    cached = { raw, ms: parsed.data };
  }
  return cached.ms;
}

/** Waits as long as a call to the demo's stand-in service takes; stops early on abort. */
export async function callDemoService(signal: AbortSignal): Promise<void> {
  const ms = demoServiceLatencyMs();
  if (ms === 0) return;
  try {
    await sleep(ms, undefined, { signal });
  } catch (error) {
    // The abort's own reason (the handler's timeout, a shutdown) says more than "aborted".
    signal.throwIfAborted();
    throw error;
  }
}
