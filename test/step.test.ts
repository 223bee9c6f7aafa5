import { describe, expect, it } from 'vitest';
import { assign, setup } from 'xstate';
import { z } from 'zod';
import { applyEvents } from '../src/actors/index.ts';
import { unstorableInJson } from '../src/shared/json.ts';
import { defineWorkflow, runHandler, WorkflowRegistry } from '../src/workflows/index.ts';
import { storedEvent } from './helpers/events.ts';

// A counter whose `poison` event stores what it is given in its context.
const machine = setup({
  types: {
    context: {} as { n: number; kept: unknown },
    events: {} as { type: 'add'; data: null } | { type: 'poison'; data: { text: string; big: boolean } },
  },
}).createMachine({
  context: { n: 0, kept: null },
  initial: 'counting',
  states: {
    counting: {
      on: {
        add: {
          actions: [
            assign({ n: ({ context }) => context.n + 1 }),
            runHandler({ name: 'audit', input: z.object({}) }, () => ({})),
          ],
        },
        poison: {
          actions: assign({ kept: ({ event }) => (event.data.big ? BigInt(1) : event.data.text) }),
        },
      },
    },
  },
});
const registry = new WorkflowRegistry([
  defineWorkflow({
    name: 'counter',
    version: 1,
    machine,
    subjects: 'counter.*.>',
    events: { add: z.null(), poison: z.object({ text: z.string(), big: z.boolean() }) },
  }),
]);
const event = (version: number, type: string, data: unknown = null) =>
  storedEvent({ machine: 'counter', entityId: 'c-1', type, version, data });
const fresh = {
  machine: 'counter',
  entityId: 'c-1',
  machineVersion: null,
  snapshot: null,
  appliedVersion: 0,
};

describe('a step whose snapshot Postgres cannot store', () => {
  it('stores the snapshot it applied as JSON text, once', () => {
    const result = applyEvents(registry, fresh, [event(1, 'add'), event(2, 'add')]);
    expect(result.status).toBe('active');
    expect(result.appliedVersion).toBe(2);
    expect(JSON.parse(result.snapshotJson)).toMatchObject({ value: 'counting', context: { n: 2 } });
    expect(result.effects).toHaveLength(2);
  });

  for (const [what, data, message] of [
    ['a BigInt', { text: '', big: true }, 'made a snapshot that is not JSON'],
    ['a NUL character', { text: 'a\u0000b', big: false }, 'made a snapshot with a NUL character'],
    [
      'half of an emoji',
      { text: '😀'.slice(0, 1), big: false },
      'made a snapshot with an unpaired UTF-16 surrogate (\\ud83d)',
    ],
  ] as const) {
    it(`fails only that entity, at its stored snapshot and with no effects, when the context holds ${what}`, () => {
      const result = applyEvents(registry, fresh, [event(1, 'add'), event(2, 'poison', data)]);
      expect(result.status).toBe('failed');
      expect(result.error).toMatchObject({ code: 'SNAPSHOT_INVALID', eventVersion: 2 });
      expect(String(result.error?.message)).toContain(`machine "counter" ${message}`);
      // Nothing of the step is kept: resumed after a fix, the entity starts from version 0 again.
      expect(result.appliedVersion).toBe(0);
      expect(result.snapshotJson).toBe('null');
      expect(result.effects).toEqual([]);
    });
  }

  it('keeps a machine error storable when its message holds half a surrogate pair or a NUL', () => {
    const breaking = new WorkflowRegistry([
      defineWorkflow({
        name: 'breaking',
        version: 1,
        subjects: 'breaking.*.>',
        events: { go: z.null() },
        machine: setup({ types: { events: {} as { type: 'go'; data: null } } }).createMachine({
          initial: 'idle',
          states: {
            idle: {
              on: {
                go: {
                  // A guard runs during the transition (actions are only collected).
                  guard: () => {
                    throw new Error(`no name for ${'😀'.slice(0, 1)} or a\u0000b`);
                  },
                  target: 'idle',
                },
              },
            },
          },
        }),
      }),
    ]);
    const result = applyEvents(
      breaking,
      { machine: 'breaking', entityId: 'b-1', machineVersion: null, snapshot: null, appliedVersion: 0 },
      [storedEvent({ machine: 'breaking', entityId: 'b-1', type: 'go', version: 1 })],
    );
    expect(result.status).toBe('failed');
    expect(unstorableInJson(JSON.stringify(result.error))).toBeUndefined();
    expect(String(result.error?.message)).toContain('no name for \ufffd or a\ufffdb');
  });
});

describe('the workflow registry', () => {
  it('starts new entities on the highest version, whatever order the versions were registered in', () => {
    const version = (v: number) =>
      defineWorkflow({
        name: 'counter',
        version: v,
        machine,
        subjects: 'counter.*.>',
        events: { add: z.null(), poison: z.object({ text: z.string(), big: z.boolean() }) },
      });
    const registry = new WorkflowRegistry([version(2), version(3), version(1)]);
    expect(registry.latest('counter')?.version).toBe(3);
    expect(applyEvents(registry, fresh, [event(1, 'add')]).machineVersion).toBe(3);
    expect(registry.latest('nothing')).toBeUndefined();
  });
});
