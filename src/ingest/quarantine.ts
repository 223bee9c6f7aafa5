import type pg from 'pg';
import { withTransaction } from '../db/index.ts';
import { StatehouseError } from '../errors/index.ts';
import { storableText } from '../shared/json.ts';
import { appendEvents } from '../store/index.ts';
import type { WorkflowRegistry } from '../workflows/index.ts';
import { parseMessage, type QuarantineReason, type RawMessage } from './envelope.ts';

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
    // The raw bytes are kept as they came (bytea); the text columns get U+FFFD in place of
    // what Postgres cannot store, so a bad message cannot fail its own quarantine.
    [
      messages.map((m) => m.reasonCode),
      messages.map((m) => storableText(m.reason)),
      messages.map((m) => storableText(m.raw.subject)),
      messages.map((m) =>
        JSON.stringify(
          Object.fromEntries(
            Object.entries(m.raw.headers).map(([k, v]) => [storableText(k), storableText(v)]),
          ),
        ),
      ),
      messages.map((m) => Buffer.from(m.raw.data)),
      messages.map((m) => storableText(m.messageId)),
      messages.map((m) => m.raw.stream),
      messages.map((m) => m.raw.seq),
    ],
  );
}

export interface QuarantineRow {
  id: number;
  reasonCode: QuarantineReason;
  reason: string;
  subject: string;
  headers: Record<string, string>;
  payload: Buffer;
  messageId: string;
  natsStream: string | null;
  natsSeq: number | null;
  status: 'held' | 'redriven' | 'dropped';
  receivedAt: Date;
  resolvedAt: Date | null;
}

const COLUMNS = `id, reason_code as "reasonCode", reason, subject, headers, payload, message_id as "messageId",
  nats_stream as "natsStream", nats_seq as "natsSeq", status, received_at as "receivedAt", resolved_at as "resolvedAt"`;

export async function listQuarantine(
  pool: pg.Pool,
  options: { includeResolved?: boolean; limit?: number } = {},
): Promise<QuarantineRow[]> {
  const { rows } = await pool.query<QuarantineRow>(
    `select ${COLUMNS} from quarantine where ($1 or status = 'held') order by id limit $2`,
    [options.includeResolved ?? false, options.limit ?? 100],
  );
  return rows;
}

export async function getQuarantined(pool: pg.Pool, id: number): Promise<QuarantineRow> {
  const { rows } = await pool.query<QuarantineRow>(`select ${COLUMNS} from quarantine where id = $1`, [id]);
  if (!rows[0])
    throw new StatehouseError(
      'USAGE',
      `no quarantined message ${id}; \`statehouse quarantine list\` shows them`,
    );
  return rows[0];
}

export type RedriveOutcome =
  | { id: number; outcome: 'stored'; machine: string; entityId: string }
  | { id: number; outcome: 'still-invalid'; reasonCode: QuarantineReason; reason: string }
  | { id: number; outcome: 'not-held'; status: string };

export interface RedriveOptions {
  maxPayloadBytes: number;
  notifyChannel: string;
  /**
   * Corrected payloads by quarantine id, validated instead of the held bytes (which stay in
   * the row, for the record). The message keeps its subject and headers.
   */
  payloads?: ReadonlyMap<number, Uint8Array>;
  /**
   * Told of each message's outcome once it is committed: each is its own transaction,
   * so when a later one fails, the earlier ones stand and the caller can say so. If it
   * throws, the ids after that one are left as they are.
   */
  onOutcome?: (outcome: RedriveOutcome) => void;
}

/**
 * Runs held messages through validation again, with the workflows as they are now
 * (after a fix to a schema or a route). Those that pass are appended to their entity's
 * stream, after the events it already has; the others stay held with the new reason.
 */
export async function redriveQuarantined(
  pool: pg.Pool,
  registry: WorkflowRegistry,
  ids: readonly number[],
  options: RedriveOptions,
): Promise<RedriveOutcome[]> {
  const outcomes: RedriveOutcome[] = [];
  for (const id of ids) {
    const outcome = await withTransaction(pool, async (client): Promise<RedriveOutcome> => {
      const { rows } = await client.query<QuarantineRow>(
        `select ${COLUMNS} from quarantine where id = $1 for update`,
        [id],
      );
      const row = rows[0];
      if (!row) throw new StatehouseError('USAGE', `no quarantined message ${id}`);
      if (row.status !== 'held') return { id, outcome: 'not-held', status: row.status };
      const corrected = options.payloads?.get(id);
      const raw: RawMessage = {
        subject: row.subject,
        data: corrected ?? new Uint8Array(row.payload),
        headers: row.headers,
        stream: row.natsStream ?? 'quarantine',
        seq: row.natsSeq ?? row.id,
        publishedAt: row.receivedAt,
      };
      const parsed = parseMessage(raw, registry, { maxPayloadBytes: options.maxPayloadBytes });
      if (!parsed.ok) {
        const reason = corrected ? `the corrected payload: ${parsed.reason}` : parsed.reason;
        await client.query('update quarantine set reason_code = $2, reason = $3 where id = $1', [
          id,
          parsed.reasonCode,
          reason,
        ]);
        return {
          id,
          outcome: 'still-invalid',
          reasonCode: parsed.reasonCode,
          reason,
        };
      }
      // Under the id the message itself gives (Nats-Msg-Id, a CloudEvent's source and id),
      // so a corrected re-send by its publisher is recognised as the same event.
      await appendEvents(client, [parsed.event], { notifyChannel: options.notifyChannel });
      await client.query(
        `update quarantine set status = 'redriven', resolved_at = now(),
             reason = case when $2 then reason || ' (re-driven with a corrected payload)' else reason end
           where id = $1`,
        [id, corrected !== undefined],
      );
      return {
        id,
        outcome: 'stored',
        machine: parsed.event.machine,
        entityId: parsed.event.entityId,
      };
    });
    outcomes.push(outcome);
    options.onOutcome?.(outcome);
  }
  return outcomes;
}

/** Ids of held messages after `after`, oldest first, without reading their payloads. */
async function heldQuarantineIds(pool: pg.Pool, after: number, limit: number): Promise<number[]> {
  // Numbers from the engine's pools; a caller's own pool may give bigint as text.
  const { rows } = await pool.query<{ id: number | string }>(
    `select id from quarantine where status = 'held' and id > $1 order by id limit $2`,
    [after, limit],
  );
  return rows.map((row) => Number(row.id));
}

/**
 * Re-drives every held message, `pageSize` ids at a time, oldest first; messages
 * quarantined meanwhile are included. Each outcome goes to `onOutcome`; resolves with how
 * many had each.
 */
export async function redriveAllHeld(
  pool: pg.Pool,
  registry: WorkflowRegistry,
  options: Omit<RedriveOptions, 'payloads'> & { pageSize?: number },
): Promise<Record<RedriveOutcome['outcome'], number>> {
  const counts = { stored: 0, 'still-invalid': 0, 'not-held': 0 };
  let after = 0;
  for (;;) {
    const ids = await heldQuarantineIds(pool, after, options.pageSize ?? 500);
    if (ids.length === 0) return counts;
    for (const outcome of await redriveQuarantined(pool, registry, ids, options)) counts[outcome.outcome]++;
    // Those still invalid stay held, after this page: not looked at twice.
    after = ids[ids.length - 1]!;
  }
}

/** Marks messages as deliberately discarded; they stay in the table for the record. */
export async function dropQuarantined(pool: pg.Pool, ids: readonly number[]): Promise<number> {
  const result = await pool.query(
    "update quarantine set status = 'dropped', resolved_at = now() where id = any($1::bigint[]) and status = 'held'",
    [ids],
  );
  return result.rowCount ?? 0;
}
