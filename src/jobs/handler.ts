import { z } from 'zod';
import { ConfigError } from '../errors/index.ts';
import type { Logger } from '../shared/logger.ts';

export interface RetryPolicy {
  /** Attempts after the first one. */
  limit: number;
  delaySeconds: number;
  /** Doubles the delay on each retry, with jitter, up to `maxDelaySeconds`. */
  backoff: boolean;
  maxDelaySeconds?: number;
}

export interface HandlerContext {
  /** The same on every attempt of this job: give it to the side effect's API to make it idempotent. */
  idempotencyKey: string;
  /** 1 on the first try, 2 on the first retry… */
  attempt: number;
  machine: string;
  entityId: string;
  log: Logger;
  /** Fires when the handler's timeout passes or the engine shuts down. */
  signal: AbortSignal;
}

export interface HandlerOptions<TInput, TOutput> {
  /** Names the pg-boss queue and the outcome events `<name>.done` / `<name>.failed`. */
  name: string;
  input: z.ZodType<TInput>;
  run: (input: TInput, ctx: HandlerContext) => Promise<TOutput>;
  /** Undoes a completed `run`; the saga calls it when a later step fails for good. */
  compensate?: (input: TInput, result: TOutput, ctx: HandlerContext) => Promise<void>;
  retry?: Partial<RetryPolicy>;
  timeoutSeconds?: number;
}

export interface Handler<TInput = unknown, TOutput = unknown> {
  readonly name: string;
  readonly input: z.ZodType<TInput>;
  readonly run: (input: TInput, ctx: HandlerContext) => Promise<TOutput>;
  readonly compensate: ((input: TInput, result: TOutput, ctx: HandlerContext) => Promise<void>) | undefined;
  readonly retry: Readonly<RetryPolicy>;
  readonly timeoutSeconds: number;
}

export const DEFAULT_RETRY: Readonly<RetryPolicy> = Object.freeze({
  limit: 3,
  delaySeconds: 1,
  backoff: true,
  maxDelaySeconds: 60,
});

/** What a handler's name may be: it becomes part of queue names. */
export const HANDLER_NAME = /^[a-zA-Z][a-zA-Z0-9_-]{0,62}$/;

const optionsSchema = z.object({
  name: z
    .string()
    .regex(HANDLER_NAME, 'starts with a letter; letters, digits, _ and -; at most 63 characters')
    // Queue names end in them: `statehouse.<name>.compensate`, `….dead`.
    .refine((name) => name !== 'compensate' && name !== 'dead', {
      error: 'is reserved ("compensate" and "dead" end queue names); pick another',
    }),
  retry: z
    .object({
      limit: z.number().int().min(0).max(1000),
      delaySeconds: z.number().int().min(0).max(86_400),
      backoff: z.boolean(),
      maxDelaySeconds: z.number().int().min(1).max(86_400).optional(),
    })
    .partial()
    .optional(),
  timeoutSeconds: z.number().int().min(1).max(86_400).optional(),
});

export function defineHandler<TInput, TOutput>(
  options: HandlerOptions<TInput, TOutput>,
): Handler<TInput, TOutput> {
  const checked = optionsSchema.safeParse(options);
  if (!checked.success) {
    const issue = checked.error.issues[0]!;
    throw new ConfigError(`handler "${options.name}": ${issue.path.join('.') || 'options'} ${issue.message}`);
  }
  return Object.freeze({
    name: options.name,
    input: options.input,
    run: options.run,
    compensate: options.compensate,
    retry: Object.freeze({ ...DEFAULT_RETRY, ...stripUndefined(options.retry ?? {}) }),
    timeoutSeconds: options.timeoutSeconds ?? 60,
  });
}

function stripUndefined<T extends object>(value: T): Partial<T> {
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined)) as Partial<T>;
}
