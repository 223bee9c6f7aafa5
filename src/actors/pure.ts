import {
  type AnyActorRef,
  type AnyActorScope,
  type AnyMachineSnapshot,
  type AnyStateMachine,
  createActor,
  type EventObject,
  type ExecutableActionsFrom,
  fromTransition,
} from 'xstate';

/**
 * XState's pure `transition` and `initialTransition`, without their largest cost.
 *
 * Both build an inert actor scope on every call, and the inert actor's constructor
 * computes the machine's initial state: more work than most transitions. Here the inert
 * actor is made once per machine and reused. Each call still gets a fresh actor system,
 * as XState's own functions do (`createInertActorScope`), so child actors registered by
 * `systemId` in one call never meet those of another. Actions are collected, not run.
 */
const inertActors = new WeakMap<AnyStateMachine, AnyActorRef>();

// An actor of trivial logic: the cheapest way to a fresh system through the public API.
const noop = fromTransition((state: null) => state, null);

// The scope's functions are made once: a call only swaps in its own action list (calls
// are synchronous, so one list at a time).
let collected: unknown[] = [];
const ignore = () => {};
const collect = (action: unknown) => {
  collected.push(action);
};

function scopeFor(machine: AnyStateMachine, actions: unknown[]): AnyActorScope {
  let self = inertActors.get(machine);
  if (!self) {
    self = createActor(machine);
    inertActors.set(machine, self);
  }
  const { system } = createActor(noop);
  (self as { system: unknown }).system = system;
  collected = actions;
  return {
    self,
    defer: ignore,
    id: '',
    logger: ignore,
    sessionId: '',
    stopChild: ignore,
    system,
    emit: ignore,
    actionExecutor: collect,
  } as unknown as AnyActorScope;
}

export type PureResult = [AnyMachineSnapshot, ExecutableActionsFrom<AnyStateMachine>[]];

/** Same as XState's `transition(machine, snapshot, event)`. */
export function pureTransition(
  machine: AnyStateMachine,
  snapshot: AnyMachineSnapshot,
  event: EventObject,
): PureResult {
  const actions: ExecutableActionsFrom<AnyStateMachine>[] = [];
  const next = machine.transition(snapshot, event as never, scopeFor(machine, actions));
  return [next, actions];
}

/** Same as XState's `initialTransition(machine, input)`. */
export function pureInitialTransition(machine: AnyStateMachine, input: unknown): PureResult {
  const actions: ExecutableActionsFrom<AnyStateMachine>[] = [];
  const initial = machine.getInitialSnapshot(scopeFor(machine, actions), input);
  return [initial, actions];
}
