import type pg from 'pg';
import type { QuarantineReason, RawMessage } from './envelope.ts';

export interface QuarantinedMessage {
  raw: RawMessage;
  reasonCode: QuarantineReason;
  reason: string;
  messageId: string;
}

/** Keeps bad messages, raw bytes and all, so they can be inspected and re-driven after a fix. */
export async function quarantineMessages(
  client: pg.ClientBase,
  messages: readonly QuarantinedMessage[],
): Promise<void> {
  if (messages.length === 0) return;
  await client.query(
    `insert into quarantine (reason_code, reason, subject, headers, payload, message_id, nats_stream, nats_seq)
     select * from unnest($1::text[], $2::text[], $3::text[], $4::jsonb[], $5::bytea[], $6::text[], $7::text[], $8::bigint[])
     on conflict (message_id) do nothing`,
    [
      messages.map((m) => m.reasonCode),
      messages.map((m) => m.reason),
      messages.map((m) => m.raw.subject),
      messages.map((m) => JSON.stringify(m.raw.headers)),
      messages.map((m) => Buffer.from(m.raw.data)),
      messages.map((m) => m.messageId),
      messages.map((m) => m.raw.stream),
      messages.map((m) => m.raw.seq),
    ],
  );
}
