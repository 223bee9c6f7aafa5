import { describe, expect, it } from 'vitest';
import { assign, setup } from 'xstate';
import { z } from 'zod';
import { applyEvents } from '../src/actors/index.ts';
import { parseMessage, type RawMessage } from '../src/ingest/index.ts';
import { defineWorkflow, subjectCovers, WorkflowRegistry } from '../src/workflows/index.ts';
import { storedEvent } from './helpers/events.ts';

// An account whose `deposited` event changed shape: v1 {cents}, v2 {amount: {value, currency}}.
const machine = setup({
  types: { context: {} as { seen: unknown[] }, events: {} as { type: 'deposited'; data: unknown } },
}).createMachine({
  context: { seen: [] },
  on: { deposited: { actions: assign({ seen: ({ context, event }) => [...context.seen, event.data] }) } },
});
const accounts = defineWorkflow({
  name: 'account',
  version: 1,
  machine,
  subjects: 'accounts.*.>',
  events: {
    deposited: {
      schemaVersion: 2,
      schema: z.object({ amount: z.object({ value: z.number().int(), currency: z.string() }) }),
      upcasters: { 1: (data) => ({ amount: { value: (data as { cents: number }).cents, currency: 'EUR' } }) },
    },
  },
});
const registry = new WorkflowRegistry([accounts], { subjectPrefix: 'env.' });
const options = { maxPayloadBytes: 4096 };

function raw(
  body: unknown,
  headers: Record<string, string> = {},
  subject = 'env.accounts.a-1.deposited',
): RawMessage {
  const text = typeof body === 'string' ? body : JSON.stringify(body);
  return {
    subject,
    data: new TextEncoder().encode(text),
    headers,
    stream: 'S',
    seq: 7,
    publishedAt: new Date(0),
  };
}

describe('parsing a NATS message', () => {
  it('takes a plain {type, data} body and dedupes on Nats-Msg-Id, else stream and sequence', () => {
    const body = { type: 'deposited', schemaVersion: 2, data: { amount: { value: 5, currency: 'EUR' } } };
    const withId = parseMessage(raw(body, { 'Nats-Msg-Id': 'm-1' }), registry, options);
    const withoutId = parseMessage(raw(body), registry, options);
    expect(withId).toMatchObject({
      ok: true,
      event: { machine: 'account', entityId: 'a-1', messageId: 'm-1' },
    });
    expect(withoutId).toMatchObject({ ok: true, event: { messageId: 'nats:S:7', schemaVersion: 2 } });
  });

  it('takes a structured CloudEvent, deduped on source and id', () => {
    const parsed = parseMessage(
      raw({
        specversion: '1.0',
        id: 'e-9',
        source: 'bank',
        type: 'deposited',
        schemaversion: 2,
        data: { amount: { value: 1, currency: 'USD' } },
        traceparent: 'tp',
      }),
      registry,
      options,
    );
    expect(parsed).toMatchObject({
      ok: true,
      event: { messageId: 'ce:bank:e-9', metadata: { traceparent: 'tp' } },
    });
  });

  it('reads CloudEvents binary-mode and tracing headers whatever their case', () => {
    const parsed = parseMessage(
      raw(
        { amount: { value: 1, currency: 'USD' } },
        {
          'Ce-Specversion': '1.0',
          'CE-ID': 'e-10',
          'ce-Source': 'bank',
          'Ce-Type': 'deposited',
          'Ce-Schemaversion': '2',
          'Correlation-ID': 'corr-1',
          Traceparent: 'tp',
        },
      ),
      registry,
      options,
    );
    expect(parsed).toMatchObject({
      ok: true,
      event: {
        type: 'deposited',
        schemaVersion: 2,
        messageId: 'ce:bank:e-10',
        metadata: { correlationId: 'corr-1', traceparent: 'tp', cloudEvent: { id: 'e-10', source: 'bank' } },
      },
    });
  });

  it('validates an old schema version through its upcaster but stores it as sent', () => {
    const parsed = parseMessage(
      raw({ type: 'deposited', schemaVersion: 1, data: { cents: 250 } }),
      registry,
      options,
    );
    expect(parsed).toMatchObject({ ok: true, event: { schemaVersion: 1, data: { cents: 250 } } });
    const bad = parseMessage(
      raw({ type: 'deposited', schemaVersion: 1, data: { cents: 'lots' } }),
      registry,
      options,
    );
    expect(bad).toMatchObject({ ok: false, reasonCode: 'schema-violation' });
  });

  it('quarantines a schema version newer than the engine knows', () => {
    const parsed = parseMessage(raw({ type: 'deposited', schemaVersion: 3, data: {} }), registry, options);
    expect(parsed).toMatchObject({ ok: false, reasonCode: 'schema-violation' });
    expect(parsed.ok ? '' : parsed.reason).toContain(
      'schema version 3 is newer than the 2 this engine knows',
    );
  });

  for (const [what, id] of [
    ['129 characters', 'x'.repeat(129)],
    ['a dollar sign', '$sys'],
    ['whitespace', 'a b'],
    ['a tab', 'a\tb'],
    ['a wildcard', '*'],
    ['a full wildcard', '>'],
    ['a percent sign', 'a%b'],
    ['non-ASCII letters', 'ünï'],
  ] as const) {
    it(`refuses an entity id with ${what}`, () => {
      const parsed = parseMessage(
        raw({ type: 'deposited', data: {} }, {}, `env.accounts.${id}.deposited`),
        registry,
        options,
      );
      expect(parsed).toMatchObject({ ok: false, reasonCode: 'invalid-entity-id' });
    });
  }

  it('takes entity ids made of letters, digits and _-:@+=~', () => {
    const parsed = parseMessage(
      raw({ type: 'deposited', data: { cents: 1 } }, {}, 'env.accounts.Ac_1-2:x@y+z=w~.deposited'),
      registry,
      options,
    );
    expect(parsed).toMatchObject({ ok: true });
  });
});

describe('upcasting when events are read', () => {
  it('hands the machine the current shape of an event stored in an old one', () => {
    const stored = (version: number, schemaVersion: number, data: unknown) =>
      storedEvent({ machine: 'account', entityId: 'a-1', type: 'deposited', version, schemaVersion, data });
    const result = applyEvents(
      registry,
      { machine: 'account', entityId: 'a-1', machineVersion: null, snapshot: null, appliedVersion: 0 },
      [stored(1, 1, { cents: 250 }), stored(2, 2, { amount: { value: 9, currency: 'USD' } })],
    );
    expect(result.error).toBeNull();
    expect((JSON.parse(result.snapshotJson) as { context: { seen: unknown[] } }).context.seen).toEqual([
      { amount: { value: 250, currency: 'EUR' } },
      { amount: { value: 9, currency: 'USD' } },
    ]);
  });

  it('gives a stored event read from the store the current shape, and leaves current or unknown ones alone', () => {
    const old = storedEvent({
      machine: 'account',
      entityId: 'a-1',
      type: 'deposited',
      schemaVersion: 1,
      data: { cents: 250 },
    });
    expect(registry.currentShape(old)).toMatchObject({
      schemaVersion: 2,
      data: { amount: { value: 250, currency: 'EUR' } },
      messageId: old.messageId,
    });
    expect(old.data).toEqual({ cents: 250 });
    const current = { ...old, schemaVersion: 2, data: { amount: { value: 1, currency: 'USD' } } };
    expect(registry.currentShape(current)).toBe(current);
    const unknown = { ...old, type: 'withdrawn' };
    expect(registry.currentShape(unknown)).toBe(unknown);
  });

  it('refuses a workflow whose schema version has no upcaster from an older one', () => {
    expect(() =>
      defineWorkflow({
        name: 'broken',
        version: 1,
        machine,
        subjects: 'broken.*.>',
        events: { deposited: { schemaVersion: 3, schema: z.object({}), upcasters: { 1: (d) => d } } },
      }),
    ).toThrow(/no upcaster from version 2; add upcasters\[2\]/);
  });
});

describe('stream subjects', () => {
  it('knows when a stream subject already covers a routed one', () => {
    expect(subjectCovers('p.ledger.>', 'p.ledger.*.>')).toBe(true);
    expect(subjectCovers('p.*.*', 'p.a.b')).toBe(true);
    expect(subjectCovers('p.*.*', 'p.a.>')).toBe(false);
    expect(subjectCovers('p.ledger.*', 'p.ledger.*.>')).toBe(false);
    expect(subjectCovers('p.orders.>', 'p.ledger.*.>')).toBe(false);
  });
});
