import { z } from 'zod';

/** What every ingest consumer (statehouse and the baselines) gets: where to read, where to write. */
export const ingestInput = z.object({
  databaseUrl: z.string().min(1),
  natsUrl: z.string().min(1),
  stream: z.string().min(1),
  /** Durable consumer name, one per consumer so each reads the whole stream. */
  consumer: z.string().min(1),
  subjectPrefix: z.string(),
  /** statehouse only: the stream for events machines emit, which Engine.create sets up. */
  emitStream: z.string().min(1),
  /** The stream's last sequence: the consumer is done once it has stored this one. */
  lastSeq: z.number().int().positive(),
  batchSize: z.number().int().positive(),
  /** Unacked messages JetStream lets the consumer hold; statehouse uses 4 × batch size. */
  maxAckPending: z.number().int().positive(),
  /** Baselines only: how the hand-written consumer is built (see bench/baselines/batched-insert.ts). */
  tuning: z
    .object({
      /** AckPolicy.All and one ack per batch, instead of an explicit ack per message. */
      ackAll: z.boolean().default(true),
      /** Decode and encode the next batch while the current one's statement runs. */
      pipeline: z.boolean().default(true),
      /** Rows as one JSON document of positional arrays, or as one array parameter per column (unnest). */
      encoding: z.enum(['json', 'arrays']).default('json'),
    })
    .prefault({}),
});
export type IngestInput = z.infer<typeof ingestInput>;
