import { z } from 'zod';
import { hasUnstorableChars, storableText, unstorableInJson } from '../shared/json.ts';
import type { NewEvent } from '../store/index.ts';
import { upcast, type WorkflowRegistry } from '../workflows/index.ts';

export type QuarantineReason =
  | 'malformed-json'
  | 'unknown-subject'
  | 'unknown-type'
  | 'schema-violation'
  | 'oversize'
  | 'invalid-entity-id'
  | 'invalid-envelope';

/** A message as it came off NATS, before anything is trusted. */
export interface RawMessage {
  subject: string;
  data: Uint8Array;
  headers: Readonly<Record<string, string>>;
  stream: string;
  seq: number;
  publishedAt: Date;
}

export type ParseResult =
  | { ok: true; event: NewEvent }
  | { ok: false; reasonCode: QuarantineReason; reason: string; messageId: string };

export interface ParseOptions {
  maxPayloadBytes: number;
}

const ENTITY_ID = /^[A-Za-z0-9_\-:@+=~]{1,128}$/;

const plainEnvelope = z.object({
  type: z.string().min(1).max(200),
  data: z.unknown().optional(),
  schemaVersion: z.number().int().min(1).optional(),
});

/** CloudEvents 1.0, structured JSON mode. Extension attributes are lower-case per the spec. */
const structuredCloudEvent = z.looseObject({
  specversion: z.literal('1.0'),
  id: z.string().min(1),
  source: z.string().min(1),
  type: z.string().min(1).max(200),
  data: z.unknown().optional(),
  data_base64: z.string().optional(),
  time: z.string().optional(),
  schemaversion: z.coerce.number().int().min(1).optional(),
});

const decoder = new TextDecoder('utf-8', { fatal: true });

/**
 * Turns a NATS message into an event for the store, or says exactly why it must be
 * quarantined. Pure: the same message always gives the same answer, which is what lets
 * a quarantined message be re-driven through it after a fix.
 */
export function parseMessage(
  raw: RawMessage,
  registry: WorkflowRegistry,
  options: ParseOptions,
): ParseResult {
  const fallbackId = raw.headers['Nats-Msg-Id'] ?? `nats:${raw.stream}:${raw.seq}`;
  const reject = (reasonCode: QuarantineReason, reason: string): ParseResult => ({
    ok: false,
    reasonCode,
    reason,
    messageId: fallbackId,
  });

  if (raw.data.byteLength > options.maxPayloadBytes) {
    return reject(
      'oversize',
      `payload is ${raw.data.byteLength} bytes; the limit is ${options.maxPayloadBytes}`,
    );
  }
  const route = registry.route(raw.subject);
  if (!route) return reject('unknown-subject', `no workflow takes subject "${raw.subject}"`);
  if (!ENTITY_ID.test(route.entityId)) {
    return reject(
      'invalid-entity-id',
      `entity id "${route.entityId}" must be 1-128 characters of letters, digits and _ - : @ + = ~`,
    );
  }

  for (const [name, value] of Object.entries(raw.headers)) {
    if (hasUnstorableChars(name) || hasUnstorableChars(value)) {
      return reject(
        'invalid-envelope',
        `header "${storableText(name)}" holds a NUL character or an unpaired surrogate, which Postgres cannot store`,
      );
    }
  }
  const envelope = readEnvelope(raw);
  if (!envelope.ok) return reject(envelope.reasonCode, envelope.reason);
  const { type, data, schemaVersion, messageId, metadata } = envelope;

  const spec = route.workflow.events[type];
  if (!spec) {
    const known = Object.keys(route.workflow.events).join(', ');
    return reject(
      'unknown-type',
      `workflow "${route.workflow.name}" takes no event type "${type}" (it takes: ${known})`,
    );
  }
  if (schemaVersion > spec.schemaVersion) {
    return reject(
      'schema-violation',
      `"${type}" schema version ${schemaVersion} is newer than the ${spec.schemaVersion} this engine knows; deploy the new workflow first`,
    );
  }
  let current: unknown;
  try {
    current = upcast(spec, schemaVersion, data);
  } catch (error) {
    return reject(
      'schema-violation',
      `upcasting "${type}" from version ${schemaVersion} failed: ${(error as Error).message}`,
    );
  }
  const checked = spec.schema.safeParse(current);
  if (!checked.success) {
    return reject(
      'schema-violation',
      `data of "${type}" does not match its schema: ${z.prettifyError(checked.error)}`,
    );
  }

  return {
    ok: true,
    event: {
      machine: route.workflow.name,
      entityId: route.entityId,
      type,
      schemaVersion,
      // Stored as sent; older versions are upcast again whenever they are read.
      data: schemaVersion === spec.schemaVersion ? checked.data : data,
      metadata,
      messageId: raw.headers['Nats-Msg-Id'] ?? messageId ?? fallbackId,
      source: 'nats',
      subject: raw.subject,
      natsStream: raw.stream,
      natsSeq: raw.seq,
      publishedAt: raw.publishedAt,
    },
  };
}

type Envelope =
  | {
      ok: true;
      type: string;
      data: unknown;
      schemaVersion: number;
      messageId: string | undefined;
      metadata: Record<string, unknown>;
    }
  | { ok: false; reasonCode: QuarantineReason; reason: string };

function readEnvelope(raw: RawMessage): Envelope {
  const h = lowercaseKeys(raw.headers);
  const traced = pick({
    correlationId: h['correlation-id'] ?? h['ce-correlationid'],
    causationId: h['causation-id'] ?? h['ce-causationid'],
    traceparent: h.traceparent ?? h['ce-traceparent'],
    tracestate: h.tracestate ?? h['ce-tracestate'],
  });

  const body = decodeJson(raw.data);
  // CloudEvents binary mode: attributes in ce- headers, the body is the data.
  if (h['ce-specversion'] !== undefined) {
    if (h['ce-specversion'] !== '1.0' || !h['ce-type'] || !h['ce-id'] || !h['ce-source']) {
      return {
        ok: false,
        reasonCode: 'invalid-envelope',
        reason: 'CloudEvents binary mode needs ce-specversion 1.0, ce-id, ce-source and ce-type headers',
      };
    }
    if (!body.ok) return { ok: false, reasonCode: 'malformed-json', reason: body.reason };
    return {
      ok: true,
      type: h['ce-type'],
      data: body.value,
      schemaVersion: Number(h['ce-schemaversion'] ?? 1) || 1,
      messageId: `ce:${h['ce-source']}:${h['ce-id']}`,
      metadata: pick({
        ...traced,
        cloudEvent: pick({ id: h['ce-id'], source: h['ce-source'], time: h['ce-time'] }),
      }),
    };
  }

  if (!body.ok) return { ok: false, reasonCode: 'malformed-json', reason: body.reason };
  const value = body.value;
  if (value !== null && typeof value === 'object' && 'specversion' in value) {
    const ce = structuredCloudEvent.safeParse(value);
    if (!ce.success) {
      return {
        ok: false,
        reasonCode: 'invalid-envelope',
        reason: `not a valid CloudEvent: ${z.prettifyError(ce.error)}`,
      };
    }
    if (ce.data.data_base64 !== undefined) {
      return {
        ok: false,
        reasonCode: 'invalid-envelope',
        reason: 'CloudEvents data_base64 is not supported; send JSON data',
      };
    }
    const ext = ce.data as Record<string, unknown>;
    return {
      ok: true,
      type: ce.data.type,
      data: ce.data.data ?? null,
      schemaVersion: ce.data.schemaversion ?? 1,
      messageId: `ce:${ce.data.source}:${ce.data.id}`,
      metadata: pick({
        correlationId: traced.correlationId ?? ext.correlationid,
        causationId: traced.causationId ?? ext.causationid,
        traceparent: traced.traceparent ?? ext.traceparent,
        tracestate: traced.tracestate ?? ext.tracestate,
        cloudEvent: pick({ id: ce.data.id, source: ce.data.source, time: ce.data.time }),
      }),
    };
  }

  const fast = plainFastPath(value);
  if (fast) return { ok: true, ...fast, messageId: undefined, metadata: traced };
  const plain = plainEnvelope.safeParse(value);
  if (!plain.success) {
    return {
      ok: false,
      reasonCode: 'invalid-envelope',
      reason: `expected {"type": string, "data": …} or a CloudEvent: ${z.prettifyError(plain.error)}`,
    };
  }
  return {
    ok: true,
    type: plain.data.type,
    data: plain.data.data ?? null,
    schemaVersion: plain.data.schemaVersion ?? 1,
    messageId: undefined,
    metadata: traced,
  };
}

/**
 * The common case of `plainEnvelope` checked by hand: zod's object parse costs more than
 * the rest of the envelope. Undefined when the value is not a valid plain envelope; zod
 * then runs to say why.
 */
function plainFastPath(value: unknown): { type: string; data: unknown; schemaVersion: number } | undefined {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return undefined;
  const { type, data, schemaVersion } = value as Record<string, unknown>;
  if (typeof type !== 'string' || type.length < 1 || type.length > 200) return undefined;
  if (schemaVersion === undefined) return { type, data: data ?? null, schemaVersion: 1 };
  if (typeof schemaVersion !== 'number' || !Number.isInteger(schemaVersion) || schemaVersion < 1)
    return undefined;
  return { type, data: data ?? null, schemaVersion };
}

function decodeJson(bytes: Uint8Array): { ok: true; value: unknown } | { ok: false; reason: string } {
  let text: string;
  let value: unknown;
  try {
    text = decoder.decode(bytes);
    value = JSON.parse(text);
  } catch (error) {
    return { ok: false, reason: `payload is not UTF-8 JSON: ${(error as Error).message}` };
  }
  // Only an escape in the text can make a NUL or an unpaired surrogate (raw ones are not valid
  // UTF-8 JSON), so the rare payload with one is the only one serialised again to check.
  const unstorable = text.includes('\\u') ? unstorableInJson(JSON.stringify(value)) : undefined;
  if (unstorable) return { ok: false, reason: `payload holds ${unstorable}, which Postgres cannot store` };
  return { ok: true, value };
}

/**
 * Header names compared without case, as HTTP-style headers are: publishers write `Ce-Id`,
 * `ce-id` or `CE-ID` for the same CloudEvents attribute. The object is reused when every name
 * is already lower case, which is the usual message.
 */
function lowercaseKeys(headers: Record<string, string>): Record<string, string> {
  let lower: Record<string, string> | undefined;
  for (const key in headers) {
    const folded = key.toLowerCase();
    if (folded === key && lower === undefined) continue;
    if (lower === undefined) {
      lower = {};
      for (const seen in headers) {
        if (seen === key) break;
        lower[seen.toLowerCase()] = headers[seen]!;
      }
    }
    // The first of two names differing only in case wins, as the first value of a header does.
    if (!(folded in lower)) lower[folded] = headers[key]!;
  }
  return lower ?? headers;
}

function pick(record: Record<string, unknown>): Record<string, unknown> {
  return Object.fromEntries(
    Object.entries(record).filter(
      ([, v]) => v !== undefined && !(typeof v === 'object' && v !== null && Object.keys(v).length === 0),
    ),
  );
}
