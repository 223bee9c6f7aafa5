import type { JsMsg } from '@nats-io/jetstream';

/** One `baseline.events` row; `data` still parsed (each encoding serializes it once). */
export type EventRow = [
  messageId: string,
  entityId: string,
  type: string,
  data: unknown,
  subject: string,
  seq: number,
  publishedAt: Date,
];

/**
 * What a careful hand-written consumer does with a message: takes the entity id from the
 * subject (`<prefix>orders.<entity>.placed`), parses the JSON body and checks it has a
 * type, and dedupes on Nats-Msg-Id (else stream + sequence).
 */
export function toRow(msg: JsMsg, entityToken: number, stream: string): EventRow {
  const entityId = msg.subject.split('.')[entityToken];
  if (!entityId) throw new Error(`subject ${msg.subject} has no entity id`);
  const body: unknown = JSON.parse(msg.string());
  if (body === null || typeof body !== 'object' || !('type' in body) || typeof body.type !== 'string') {
    throw new Error(`message ${msg.seq} has no type`);
  }
  const data = 'data' in body ? body.data : null;
  return [
    msg.headers?.get('Nats-Msg-Id') || `nats:${stream}:${msg.seq}`,
    entityId,
    body.type,
    data ?? null,
    msg.subject,
    msg.seq,
    new Date(Number(msg.timestampNanos / 1_000_000n)),
  ];
}

/** Where the entity id sits in a subject with this prefix: `a.b.` + `orders.<id>.placed` → 3. */
export function entityTokenIndex(subjectPrefix: string): number {
  return subjectPrefix.split('.').filter(Boolean).length + 1;
}

/** The row as query parameters, `data` as JSON text. */
export function rowValues(row: EventRow): unknown[] {
  return [row[0], row[1], row[2], JSON.stringify(row[3]), row[4], row[5], row[6]];
}
