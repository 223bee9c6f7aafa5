import { storableText } from '../shared/json.ts';
/**
 * One error hierarchy for the whole engine. Callers branch on `code` (stable, documented
 * in docs/errors.md), never on message text; `retryable` tells loops whether backing off
 * and trying again can help.
 */
export type ErrorCode =
  | 'CONFIG_INVALID'
  | 'SERVICE_UNAVAILABLE'
  | 'MIGRATION_FAILED'
  | 'SCHEMA_TOO_NEW'
  | 'VERSION_CONFLICT'
  | 'ENTITY_NOT_FOUND'
  | 'ENTITY_AMBIGUOUS'
  | 'HANDLER_NOT_FOUND'
  | 'HANDLER_INPUT_INVALID'
  | 'HANDLER_OUTPUT_INVALID'
  | 'HANDLER_TIMEOUT'
  | 'SNAPSHOT_INVALID'
  | 'JOB_NOT_FOUND'
  | 'JOB_STATE_INVALID'
  | 'BUSY'
  | 'NON_RETRYABLE'
  | 'USAGE'
  | 'SHUTTING_DOWN';

export interface StatehouseErrorOptions {
  cause?: unknown;
  retryable?: boolean;
  details?: Record<string, unknown>;
}

export class StatehouseError extends Error {
  readonly code: ErrorCode;
  readonly retryable: boolean;
  readonly details: Record<string, unknown>;

  constructor(code: ErrorCode, message: string, options: StatehouseErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
    this.code = code;
    this.retryable = options.retryable ?? false;
    this.details = options.details ?? {};
  }

  toJSON(): Record<string, unknown> {
    return { name: this.name, code: this.code, message: this.message, details: this.details };
  }
}

export class ConfigError extends StatehouseError {
  constructor(message: string, options?: StatehouseErrorOptions) {
    super('CONFIG_INVALID', message, options);
  }
}

export class ServiceUnavailableError extends StatehouseError {
  constructor(message: string, options?: StatehouseErrorOptions) {
    super('SERVICE_UNAVAILABLE', message, { retryable: true, ...options });
  }
}

export class VersionConflictError extends StatehouseError {
  constructor(entity: string, expected: number, actual: number) {
    super(
      'VERSION_CONFLICT',
      `entity ${entity} is at version ${actual}, but the append expected version ${expected}; read the stream again and retry`,
      { retryable: true, details: { entity, expected, actual } },
    );
  }
}

/**
 * Thrown by a handler to say that retrying cannot help (a declined card, a validation
 * failure upstream). The job fails at once and its `<handler>.failed` event is recorded.
 */
export class NonRetryableError extends StatehouseError {
  constructor(message: string, options?: Omit<StatehouseErrorOptions, 'retryable'>) {
    super('NON_RETRYABLE', message, { ...options, retryable: false });
  }
}

export class UsageError extends StatehouseError {
  constructor(message: string, options?: StatehouseErrorOptions) {
    super('USAGE', message, options);
  }
}

/** A plain, JSON-safe description of any thrown value, for storing in Postgres. */
export function describeError(error: unknown): {
  name: string;
  message: string;
  code?: string;
  stack?: string;
} {
  // Stored as jsonb: a NUL or half a surrogate pair in a message would fail the statement
  // that records it, and with it everything recorded alongside (hence storableText).
  if (error instanceof StatehouseError) {
    return {
      name: storableText(error.name),
      message: storableText(error.message),
      code: error.code,
      ...(error.stack ? { stack: storableText(error.stack) } : {}),
    };
  }
  if (error instanceof Error) {
    const code = (error as { code?: unknown }).code;
    return {
      name: storableText(error.name),
      message: storableText(error.message),
      ...(typeof code === 'string' ? { code: storableText(code) } : {}),
      ...(error.stack ? { stack: storableText(error.stack) } : {}),
    };
  }
  return { name: 'Error', message: storableText(String(error)) };
}
