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
  /** The last stream sequence stored: where a consumer that has to be made anew resumes after. */
  checkpoint: number;
}

/**
 * Makes sure the durable pull consumer exists, acks all (AckPolicy.All: the one reader stores
 * in stream order, so one ack per batch, of its highest sequence, acknowledges the batch) and
 * has the settings asked for. It is made anew, delivering from `checkpoint + 1`, when it
 * delivered past the checkpoint (a leader died with messages in hand: JetStream would
 * redeliver them only after newer ones, out of order), when an older version made it with
 * another ack policy (which cannot be updated), or when it is missing while the checkpoint
 * says messages were stored.
 */
export async function ensureConsumer(jsm: JetStreamManager, settings: ConsumerSettings): Promise<void> {
  const { stream, consumer, checkpoint } = settings;
  const existing = await jsm.consumers.info(stream, consumer).catch((error: unknown) => {
    if (isNotFound(error)) return undefined;
    throw error;
  });
  const config = {
    durable_name: consumer,
    ack_policy: AckPolicy.All,
    ack_wait: settings.ackWaitMs * 1_000_000,
    max_deliver: settings.maxDeliver,
    max_ack_pending: settings.maxAckPending,
  };
  const resume =
    existing === undefined
      ? checkpoint > 0
      : existing.delivered.stream_seq > checkpoint || existing.config.ack_policy !== AckPolicy.All;
  if (resume) {
    if (existing) await jsm.consumers.delete(stream, consumer).catch(ignoreNotFound);
    await jsm.consumers.add(stream, {
      ...config,
      deliver_policy: DeliverPolicy.StartSequence,
      opt_start_seq: checkpoint + 1,
    });
  } else if (!existing) {
    await jsm.consumers.add(stream, { ...config, deliver_policy: DeliverPolicy.All });
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
