export type EventSource = 'nats' | 'handler' | 'timer' | 'operator' | 'engine';

/** An event about to be appended; the store gives it its version and position. */
export interface NewEvent {
  machine: string;
  entityId: string;
  type: string;
  schemaVersion?: number;
  data: unknown;
  metadata?: Record<string, unknown>;
  messageId: string;
  source: EventSource;
  subject?: string | null;
  natsStream?: string | null;
  natsSeq?: number | null;
  publishedAt?: Date | null;
}

export interface StoredEvent {
  position: number;
  machine: string;
  entityId: string;
  version: number;
  type: string;
  schemaVersion: number;
  data: unknown;
  metadata: Record<string, unknown>;
  messageId: string;
  source: EventSource;
  subject: string | null;
  natsStream: string | null;
  natsSeq: number | null;
  publishedAt: Date | null;
  recordedAt: Date;
}

export interface AppendedEvent {
  position: number;
  machine: string;
  entityId: string;
  version: number;
  messageId: string;
}

export interface AppendResult {
  appended: AppendedEvent[];
  /** Events skipped because their message id was already stored (redeliveries, retries). */
  duplicates: number;
}
