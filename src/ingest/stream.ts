import {
  AckPolicy,
  DeliverPolicy,
  JetStreamApiError,
  type JetStreamManager,
  RetentionPolicy,
  StorageType,
} from '@nats-io/jetstream';
import { ServiceUnavailableError } from '../errors/index.ts';
import { subjectCovers } from '../workflows/index.ts';

export interface StreamSettings {
  stream: string;
  subjects: readonly string[];
}

/**
 * Creates the stream, or widens an existing one to take every subject the engine routes.
 * Subjects are only ever added: removing one would silently drop a publisher's messages.
 */
export async function ensureStream(jsm: JetStreamManager, settings: StreamSettings): Promise<void> {
  const { stream, subjects } = settings;
  const info = await jsm.streams.info(stream).catch((error: unknown) => {
    if (isNotFound(error)) return undefined;
    throw error;
  });
  try {
    if (!info) {
      await jsm.streams.add({
        name: stream,
        subjects: [...subjects],
        storage: StorageType.File,
        retention: RetentionPolicy.Limits,
      });
      return;
    }
    const existing = info.config.subjects ?? [];
    const missing = subjects.filter((s) => !existing.some((e) => subjectCovers(e, s)));
    if (missing.length > 0) {
      await jsm.streams.update(stream, { subjects: [...(info.config.subjects ?? []), ...missing] });
    }
  } catch (cause) {
    throw new ServiceUnavailableError(
      `cannot set up NATS stream "${stream}" for subjects ${subjects.join(', ')}: ${(cause as Error).message}. ` +
        'If another stream already takes these subjects, set STATEHOUSE_STREAM to it or remove the overlap.',
      { cause, retryable: false },
    );
  }
}

export interface ConsumerSettings {
  stream: string;
  consumer: string;
  ackWaitMs: number;
  maxDeliver: number;
  maxAckPending: number;
  /** Restart delivery at this stream sequence (a leader resuming from its checkpoint). */
  startSeq?: number;
}

/**
 * Creates the durable pull consumer; with `startSeq`, replaces it so delivery resumes exactly
 * there. The consumer acks all (AckPolicy.All): the one reader stores in stream order, so one
 * ack per batch, of its highest sequence, acknowledges the batch. A consumer with another
 * ack policy must be replaced with `startSeq` (the policy of a consumer cannot be updated).
 */
export async function ensureConsumer(jsm: JetStreamManager, settings: ConsumerSettings): Promise<void> {
  const { stream, consumer, startSeq } = settings;
  if (startSeq !== undefined) await jsm.consumers.delete(stream, consumer).catch(ignoreNotFound);
  const config = {
    durable_name: consumer,
    ack_policy: AckPolicy.All,
    ack_wait: settings.ackWaitMs * 1_000_000,
    max_deliver: settings.maxDeliver,
    max_ack_pending: settings.maxAckPending,
    ...(startSeq !== undefined
      ? { deliver_policy: DeliverPolicy.StartSequence, opt_start_seq: Math.max(1, startSeq) }
      : { deliver_policy: DeliverPolicy.All }),
  };
  const existing = await jsm.consumers.info(stream, consumer).catch((error: unknown) => {
    if (isNotFound(error)) return undefined;
    throw error;
  });
  if (!existing) await jsm.consumers.add(stream, config);
  else if (existing.config.ack_policy !== AckPolicy.All) {
    throw new ServiceUnavailableError(
      `consumer "${consumer}" of stream "${stream}" acks ${existing.config.ack_policy}, not all; replace it at the ingest checkpoint (startSeq)`,
      { retryable: false },
    );
  } else if (
    existing.config.ack_wait !== config.ack_wait ||
    existing.config.max_deliver !== config.max_deliver ||
    existing.config.max_ack_pending !== config.max_ack_pending
  ) {
    await jsm.consumers.update(stream, consumer, {
      ack_wait: config.ack_wait,
      max_deliver: config.max_deliver,
      max_ack_pending: config.max_ack_pending,
    });
  }
}

export function isNotFound(error: unknown): boolean {
  if (error instanceof JetStreamApiError) return error.status === 404;
  return /not found/i.test((error as Error | null)?.message ?? '');
}

function ignoreNotFound(error: unknown): void {
  if (!isNotFound(error)) throw error;
}
