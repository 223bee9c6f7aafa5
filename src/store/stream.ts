import type pg from 'pg';
import { withTransaction } from '../db/index.ts';
import { VersionConflictError } from '../errors/index.ts';
import { appendEvents, isDuplicateMessageError } from './append.ts';
import type { AppendResult, NewEvent } from './types.ts';

export interface AppendToStreamOptions {
  /**
   * The version the caller last read: 0 for a new stream. The append fails with a
   * `VersionConflictError` when another writer got there first. Omit to append anyway.
   */
  expectedVersion?: number;
  notifyChannel?: string;
}

/**
 * Appends events to one entity's stream with optimistic concurrency, for code that
 * writes events directly (imports, operators, other services sharing the database).
 */
export async function appendToStream(
  pool: pg.Pool,
  machine: string,
  entityId: string,
  events: ReadonlyArray<Omit<NewEvent, 'machine' | 'entityId'>>,
  options: AppendToStreamOptions = {},
): Promise<AppendResult> {
  return withTransaction(
    pool,
    async (client) => {
      const result = await appendEvents(
        client,
        events.map((e) => ({ ...e, machine, entityId })),
        options.notifyChannel ? { notifyChannel: options.notifyChannel } : {},
      );
      // Checked after the append, whose upsert serializes writers to this entity: the
      // first new version tells what the stream held when this transaction got its turn.
      const first = result.appended[0];
      if (options.expectedVersion !== undefined && first && first.version !== options.expectedVersion + 1) {
        throw new VersionConflictError(`${machine}/${entityId}`, options.expectedVersion, first.version - 1);
      }
      return result;
    },
    { alsoRetry: isDuplicateMessageError },
  );
}
