import { describe, expect, it } from 'vitest';
import {
  type AnyMachineSnapshot,
  type AnyStateMachine,
  assign,
  cancel,
  emit,
  fromCallback,
  fromPromise,
  initialTransition,
  raise,
  sendTo,
  setup,
  spawnChild,
  transition,
} from 'xstate';
import { workflows } from '../machines/index.ts';
import { pureInitialTransition, pureTransition } from '../src/actors/pure.ts';

type Event = { type: string; data?: unknown };

/** Runs the events through both and returns what can be compared: persisted snapshots, action types and params. */
function run(
  machine: AnyStateMachine,
  input: unknown,
  events: Event[],
  initial: typeof initialTransition,
  step: typeof transition,
) {
  const seen: unknown[] = [];
  let [snapshot, actions] = initial(machine, input) as [
    AnyMachineSnapshot,
    Array<{ type: string; params?: unknown }>,
  ];
  seen.push(
    machine.getPersistedSnapshot(snapshot),
    actions.map((a) => [a.type, a.params]),
  );
  for (const event of events) {
    [snapshot, actions] = step(machine, snapshot, event as never) as [
      AnyMachineSnapshot,
      Array<{ type: string; params?: unknown }>,
    ];
    seen.push(
      machine.getPersistedSnapshot(snapshot),
      actions.map((a) => [a.type, a.params]),
    );
  }
  return JSON.parse(JSON.stringify(seen));
}

describe('pure transitions with a reused inert actor', () => {
  it('give the same snapshots and actions as XState’s transition for the order saga', () => {
    const order = workflows.find((w) => w.name === 'order')!.machine;
    const events: Event[] = [
      {
        type: 'order.placed',
        data: {
          customerId: 'c-1',
          items: [{ sku: 'A', quantity: 2 }],
          amountCents: 1200,
          paymentMethod: 'card',
          address: 'x',
        },
      },
      { type: 'reserveStock.done', data: { reservationId: 'r-1' } },
      { type: 'chargePayment.failed', data: { error: { message: 'declined' } } },
    ];
    const input = { entityId: 'o-1' };
    const ours = run(order, input, events, pureInitialTransition as never, pureTransition as never);
    expect(ours).toEqual(run(order, input, events, initialTransition, transition));
  });

  it('give the same result for raised and delayed events, and a fresh system per call', () => {
    const machine = setup({
      actors: { work: fromPromise(async () => 1) },
    }).createMachine({
      context: { n: 0 },
      initial: 'idle',
      states: {
        idle: {
          on: {
            go: {
              target: 'busy',
              actions: [assign({ n: ({ context }) => context.n + 1 }), raise({ type: 'inner' })],
            },
          },
        },
        busy: {
          // A child with a systemId: registering it twice in one system would throw.
          invoke: { src: 'work', systemId: 'worker' },
          after: { 1000: 'idle' },
          on: { inner: { actions: assign({ n: ({ context }) => context.n + 10 }) }, back: 'idle' },
        },
      },
    });
    const events: Event[] = [{ type: 'go' }, { type: 'back' }, { type: 'go' }];
    const ours = run(machine, undefined, events, pureInitialTransition as never, pureTransition as never);
    expect(ours).toEqual(run(machine, undefined, events, initialTransition, transition));
    // Two separate entities entering the invoking state one after the other.
    const [start] = pureInitialTransition(machine, undefined);
    expect(() => {
      pureTransition(machine, start, { type: 'go' });
      pureTransition(machine, start, { type: 'go' });
    }).not.toThrow();
  });
});

describe('pure transitions and child actors', () => {
  it('give the same result as XState’s for spawned children with a systemId, sendTo, cancel and emit, entity after entity', async () => {
    const machine = setup({
      actors: { child: fromCallback(() => () => {}) },
    }).createMachine({
      context: { seen: 0 },
      initial: 'idle',
      states: {
        idle: {
          entry: spawnChild('child', { id: 'c', systemId: 'helper' }),
          on: {
            ping: {
              actions: [
                // Registered in this call, then looked up in it.
                spawnChild('child', { id: 'p', systemId: 'pinger' }),
                assign({ seen: ({ context, system }) => context.seen + (system.get('pinger') ? 1 : 10) }),
                sendTo(({ system }) => system.get('pinger') ?? 'c', { type: 'hello' }),
                raise({ type: 'later' }, { id: 'tick', delay: 500 }),
              ],
            },
            stop: { actions: [cancel('tick'), emit({ type: 'stopped' })], target: 'done' },
          },
        },
        done: { type: 'final' },
      },
    });
    const events: Event[] = [{ type: 'ping' }, { type: 'ping' }, { type: 'stop' }];
    // Two entities one after the other, each registering the same systemId.
    for (const input of [{ entityId: 'a' }, { entityId: 'b' }]) {
      const ours = run(machine, input, events, pureInitialTransition as never, pureTransition as never);
      expect(ours).toEqual(run(machine, input, events, initialTransition, transition));
    }
  });
});

describe('initial transitions, entity after entity', () => {
  type Input = { entityId: string; vip?: boolean };
  const events: Event[] = [
    { type: 'add', data: 1 },
    { type: 'add', data: 2 },
  ];
  const add = assign({
    items: ({
      context,
      event,
    }: {
      context: { items: number[] };
      event: { type: string; data?: unknown };
    }) => [...context.items, event.data as number],
  });
  const inputOf = (event: unknown) => (event as { input?: Input }).input;
  const fromInput = assign({ id: ({ event }) => inputOf(event)?.entityId ?? '' }) as never;
  // Each reads the input, or runs something on entry, in its own way; the first reads nothing.
  // Factories: the shared snapshot is kept per machine object.
  const machines: Record<string, () => AnyStateMachine> = {
    'a constant initial state': () =>
      setup({}).createMachine({
        context: { items: [] as number[] },
        initial: 'open',
        states: { open: { on: { add: { actions: add as never } } } },
      }),
    'a constant parallel initial state': () =>
      setup({}).createMachine({
        context: { items: [] as number[] },
        type: 'parallel',
        states: {
          left: { initial: 'l1', states: { l1: { on: { add: { actions: add as never } } } } },
          right: { initial: 'r1', states: { r1: {} } },
        },
      }),
    'a context made from the input': () =>
      setup({}).createMachine({
        context: ({ input }: { input: Input }) => ({ items: [] as number[], id: input.entityId }),
        initial: 'open',
        states: { open: { on: { add: { actions: add as never } } } },
      }),
    'an entry action that reads the input': () =>
      setup({}).createMachine({
        context: { items: [] as number[], id: '' },
        initial: 'open',
        states: { open: { entry: fromInput, on: { add: { actions: add as never } } } },
      }),
    'an eventless transition on the input': () =>
      setup({}).createMachine({
        context: { items: [] as number[] },
        initial: 'open',
        states: {
          open: {
            always: { guard: ({ event }) => inputOf(event)?.vip === true, target: 'vip' },
            on: { add: { actions: add as never } },
          },
          vip: { on: { add: { actions: add as never } } },
        },
      }),
    'a state passed straight through, whose entry reads the input': () =>
      setup({}).createMachine({
        context: { items: [] as number[], id: '' },
        initial: 'through',
        states: {
          through: { entry: fromInput, always: 'open' },
          open: { on: { add: { actions: add as never } } },
        },
      }),
    'an eventless transition whose actions read the input': () =>
      setup({}).createMachine({
        context: { items: [] as number[], id: '' },
        initial: 'through',
        states: {
          through: { always: { target: 'open', actions: fromInput } },
          open: { on: { add: { actions: add as never } } },
        },
      }),
    'a final state whose output reads the input': () =>
      setup({}).createMachine({
        context: { items: [] as number[], id: '' },
        initial: 'start',
        states: {
          start: {
            initial: 'done',
            states: { done: { type: 'final', output: ({ event }) => inputOf(event)?.entityId } },
            onDone: { actions: assign({ id: ({ event }) => String(event.output) }) },
            on: { add: { actions: add as never } },
          },
        },
      }),
    'a delayed transition': () =>
      setup({}).createMachine({
        context: { items: [] as number[] },
        initial: 'open',
        states: { open: { after: { 1000: 'late' }, on: { add: { actions: add as never } } }, late: {} },
      }),
  };
  const orders: Input[][] = [
    [{ entityId: 'a' }, { entityId: 'b', vip: true }, { entityId: 'c' }],
    [{ entityId: 'b', vip: true }, { entityId: 'a' }, { entityId: 'c' }],
  ];
  for (const [name, make] of Object.entries(machines)) {
    it(`give what XState’s give for ${name}, whichever entity comes first`, () => {
      for (const inputs of orders) {
        const machine = make();
        for (const input of inputs) {
          const ours = run(machine, input, events, pureInitialTransition as never, pureTransition as never);
          expect(ours).toEqual(run(machine, input, events, initialTransition, transition));
        }
      }
    });
  }

  it('share one snapshot between entities only for a machine that cannot tell them apart', () => {
    const constant = machines['a constant initial state']!();
    const [first] = pureInitialTransition(constant, { entityId: 'a' });
    expect(pureInitialTransition(constant, { entityId: 'b' })[0]).toBe(first);
    const parallel = machines['a constant parallel initial state']!();
    const [firstParallel] = pureInitialTransition(parallel, { entityId: 'a' });
    expect(pureInitialTransition(parallel, { entityId: 'b' })[0]).toBe(firstParallel);
    const reading = machines['an entry action that reads the input']!();
    const [fromA] = pureInitialTransition(reading, { entityId: 'a' });
    expect(pureInitialTransition(reading, { entityId: 'b' })[0]).not.toBe(fromA);
  });
});
