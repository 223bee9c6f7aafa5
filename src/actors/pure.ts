import {
  type ActorSystem,
  type AnyActorRef,
  type AnyActorScope,
  type AnyMachineSnapshot,
  type AnyStateMachine,
  createActor,
  type EventObject,
  type ExecutableActionsFrom,
  fromTransition,
} from 'xstate';

/*
 * XState's pure `transition` and `initialTransition`, without their largest costs.
 *
 * Both build an inert actor scope on every call, and the inert actor's constructor
 * computes the machine's initial state: more work than most transitions. Here the inert
 * actor and its scope are made once per machine and reused. Each call still gets a fresh
 * actor system, as XState's own functions do (`createInertActorScope`), so child actors
 * registered by `systemId` in one call never meet those of another; but only once the
 * call uses it (see `CallSystem`). Actions are collected, not run.
 *
 * Calls must not nest (none does: they are synchronous, and nothing here calls back into
 * them). A child actor made in a call reaches the system through the shared stand-in, so
 * reading `child.system` after a later call shows that call's system; what a call returns
 * is read before the next one starts.
 */

// An actor of trivial logic: the cheapest way to a fresh system through the public API.
const noop = fromTransition((state: null) => state, null);

/** The members XState's own code calls on a system besides the public ones. */
// biome-ignore lint/suspicious/noExplicitAny: XState's own name for any system (AnyActorSystem)
type InternalSystem = ActorSystem<any> & {
  _bookId(): string;
  _register(sessionId: string, actor: AnyActorRef): string;
  _unregister(actor: AnyActorRef): void;
  _set(systemId: string, actor: AnyActorRef): void;
  _sendInspectionEvent(event: unknown): void;
  _relay(source: AnyActorRef | undefined, target: AnyActorRef, event: EventObject): void;
  _snapshot: unknown;
};

const freshSystem = () => createActor(noop).system as InternalSystem;
/** The default clock and logger every fresh system gets: stateless, so shared. */
const { _clock: defaultClock, _logger: defaultLogger } = freshSystem();

/**
 * The actor system of the call in progress, made on first use. A transition that spawns,
 * invokes or looks up no actor never touches one beyond its inspection events, which a
 * fresh system sends to nobody; making one (an actor) was a twentieth of a transition's
 * CPU. `reset` at the start of each call gives it a new one, as XState's functions do.
 */
class CallSystem implements InternalSystem {
  #system: InternalSystem | undefined;
  readonly _clock = defaultClock;
  readonly _logger = defaultLogger;

  reset(): void {
    this.#system = undefined;
  }

  get #made(): InternalSystem {
    this.#system ??= freshSystem();
    return this.#system;
  }

  get scheduler() {
    return this.#made.scheduler;
  }
  get _snapshot() {
    return this.#made._snapshot;
  }
  get: InternalSystem['get'] = (key) => this.#system?.get(key);
  getAll: InternalSystem['getAll'] = () => this.#system?.getAll() ?? {};
  inspect: InternalSystem['inspect'] = (observer) => this.#made.inspect(observer);
  getSnapshot: InternalSystem['getSnapshot'] = () => this.#system?.getSnapshot() ?? { _scheduledEvents: {} };
  start = () => this.#made.start();
  _bookId = () => this.#made._bookId();
  _register = (sessionId: string, actor: AnyActorRef) => this.#made._register(sessionId, actor);
  _unregister = (actor: AnyActorRef) => this.#system?._unregister(actor);
  _set = (systemId: string, actor: AnyActorRef) => this.#made._set(systemId, actor);
  _sendInspectionEvent = (event: unknown) => this.#system?._sendInspectionEvent(event);
  _relay = (source: AnyActorRef | undefined, target: AnyActorRef, event: EventObject) =>
    this.#made._relay(source, target, event);
}

const system = new CallSystem();

// The scope's functions are made once: a call only swaps in its own action list (calls
// are synchronous, so one list at a time).
let collected: unknown[] = [];
const ignore = () => {};
const collect = (action: unknown) => {
  collected.push(action);
};

const scopes = new WeakMap<AnyStateMachine, AnyActorScope>();

function scopeFor(machine: AnyStateMachine, actions: unknown[]): AnyActorScope {
  let scope = scopes.get(machine);
  if (!scope) {
    const self = createActor(machine);
    (self as { system: unknown }).system = system;
    scope = {
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
    scopes.set(machine, scope);
  }
  system.reset();
  collected = actions;
  return scope;
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

/**
 * Each machine's initial snapshot when nothing in it can depend on the input (see
 * `ignoresInput`), else null; absent until the machine's first initial transition.
 */
const constantInitial = new WeakMap<AnyStateMachine, AnyMachineSnapshot | null>();

/**
 * Same as XState's `initialTransition(machine, input)`. A machine whose initial snapshot
 * cannot depend on the input gets the one made first, shared: snapshots are immutable, as
 * XState already shares a static context between all its actors. An initial transition
 * costs as much as two ordinary ones, and every new entity takes one.
 */
export function pureInitialTransition(machine: AnyStateMachine, input: unknown): PureResult {
  const cached = constantInitial.get(machine);
  if (cached) return [cached, []];
  const actions: ExecutableActionsFrom<AnyStateMachine>[] = [];
  const initial = machine.getInitialSnapshot(scopeFor(machine, actions), input);
  if (cached === undefined)
    constantInitial.set(machine, ignoresInput(machine, initial, actions) ? initial : null);
  return [initial, actions];
}

type AnyStateNode = AnyMachineSnapshot['_nodes'][number];

/**
 * Whether a machine's initial snapshot is the same for every input. Decided from the
 * machine's definition, not from where the first entity ended up (a transition taken on
 * the way, by an eventless guard or a done event, may have read the input): the context is
 * an object, not a function of the input; the states the machine starts in (`startingNodes`)
 * are none final and run nothing on entry (no entry action, delayed or eventless
 * transition, invocation or initial-transition action); and the snapshot is in exactly
 * those states, so no transition was taken.
 */
function ignoresInput(
  machine: AnyStateMachine,
  initial: AnyMachineSnapshot,
  actions: readonly unknown[],
): boolean {
  // Without a context XState makes a fresh `{}` for each actor; with one it shares it.
  const { context } = machine.config;
  if (typeof context !== 'object' || context === null || actions.length > 0) return false;
  if (initial.status !== 'active' || Object.keys(initial.children).length > 0) return false;
  const nodes = startingNodes(machine.root);
  if (!nodes) return false;
  const quiet = nodes.every(
    (node) =>
      // A delayed transition is also a raise in `entry`, and its action would show in
      // `actions`; checked all the same.
      node.after.length === 0 &&
      node.entry.length === 0 &&
      node.invoke.length === 0 &&
      (node.always?.length ?? 0) === 0 &&
      (node.type !== 'compound' || node.initial.actions.length === 0),
  );
  return (
    quiet && initial._nodes.length === nodes.length && nodes.every((node) => initial._nodes.includes(node))
  );
}

/**
 * The states a machine enters first, by its definition: each compound state's initial
 * child, every region of a parallel one. Undefined when that takes a final state (its done
 * event and output run at once) or anything unusual (a history or deeper initial target).
 */
function startingNodes(root: AnyStateNode): AnyStateNode[] | undefined {
  const nodes: AnyStateNode[] = [];
  const visit = (node: AnyStateNode): boolean => {
    nodes.push(node);
    if (node.type === 'compound') {
      const target = node.initial.target?.[0];
      return target !== undefined && target.parent === node && target.type !== 'history' && visit(target);
    }
    if (node.type === 'parallel') {
      return Object.values(node.states)
        .filter((child) => child.type !== 'history')
        .every(visit);
    }
    return node.type === 'atomic';
  };
  return visit(root) ? nodes : undefined;
}
