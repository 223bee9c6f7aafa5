import type { ActionArgs, ActionFunction, EventObject, MachineContext, ParameterizedObject } from 'xstate';
import type { z } from 'zod';

/**
 * What a transition asks the engine to do once its step has committed: run a handler,
 * run its compensation (`input` is then `{ input, result }` of the step to undo), or
 * publish an event to NATS through the outbox.
 */
export type JobEffect = {
  kind: 'run' | 'compensate';
  handler: string;
  input: unknown;
  /** A run the saga undoes with the handler's `compensate` if the entity later compensates. */
  compensable?: boolean;
};
/** Undo every completed compensable step of the entity, newest first (`compensateCompleted()`). */
export type SagaEffect = { kind: 'compensate-completed' };
export type EmitEffect = { kind: 'emit'; subject: string; type: string; data: unknown };
/** A delayed event (`after`, or `raise` with a delay) kept as a durable timer; `cancel-timer` drops it. */
export type TimerEffect =
  | { kind: 'timer'; id: string; event: { type: string; data?: unknown }; delayMs: number }
  | { kind: 'cancel-timer'; id: string };
export type Effect = JobEffect | SagaEffect | EmitEffect | TimerEffect;

export interface RunHandlerOptions {
  /**
   * Makes the run a saga step: once it completes, `compensateCompleted()` undoes it with
   * the handler's `compensate`. The handler must define one.
   */
  compensable?: boolean;
}

/** What `emitEvent` publishes: `{ type, data }` as the body, to `subject` (the configured prefix is added). */
export interface EmittedEvent {
  subject: string;
  type: string;
  data?: unknown;
}

/** The part of a handler definition a machine needs: its name and the shape of its input. */
export interface HandlerRef<TInput = unknown, TOutput = unknown> {
  readonly name: string;
  readonly input: z.ZodType<TInput>;
  /** Only for typing `compensate(...)`: the handler's result type. */
  readonly __output?: TOutput;
}

const EFFECT = Symbol.for('statehouse.effect');

/** An XState action standing for an effect: no children, delays, guards or emitted events of its own. */
type EffectAction<
  TContext extends MachineContext,
  TExpressionEvent extends EventObject,
  TEvent extends EventObject,
  TParams extends ParameterizedObject['params'] | undefined,
> = ActionFunction<TContext, TExpressionEvent, TEvent, TParams, never, never, never, never, never>;

type EffectResolver = (args: ActionArgs<MachineContext, EventObject, EventObject>) => Effect;
type Tagged = { [EFFECT]?: EffectResolver };

/**
 * An action that runs `handler` as a durable job with the input computed from the
 * machine's context and event. The job is enqueued in the same transaction as the state
 * change; its outcome comes back as `<handler>.done` or `<handler>.failed`.
 *
 * XState's pure `transition` does not execute actions, so the action itself does nothing:
 * the dispatcher recognises it by its tag and turns it into a job.
 */
export function runHandler<
  TInput,
  TContext extends MachineContext,
  TExpressionEvent extends EventObject,
  TParams extends ParameterizedObject['params'] | undefined,
  TEvent extends EventObject,
>(
  handler: HandlerRef<TInput>,
  input: (args: ActionArgs<TContext, TExpressionEvent, TEvent>) => NoInfer<TInput>,
  options: RunHandlerOptions = {},
): EffectAction<TContext, TExpressionEvent, TEvent, TParams> {
  const compensable = options.compensable === true;
  return effectAction((args) => ({
    kind: 'run',
    handler: handler.name,
    input: input(args),
    ...(compensable ? { compensable } : {}),
  }));
}

/**
 * An action that undoes the entity's completed compensable steps (runs started with
 * `runHandler(..., { compensable: true })`), newest first, one at a time, each
 * compensation a job with its handler's retries. When all are undone the machine gets
 * `saga.compensated`; when one fails for good it gets `saga.compensationFailed` (with the
 * handler and the error) and the entity shows `needs-attention` until an operator retries
 * the failed compensation (`statehouse jobs retry <id>`), after which the saga goes on.
 */
export function compensateCompleted<
  TContext extends MachineContext,
  TExpressionEvent extends EventObject,
  TParams extends ParameterizedObject['params'] | undefined,
  TEvent extends EventObject,
>(): EffectAction<TContext, TExpressionEvent, TEvent, TParams> {
  return effectAction(() => ({ kind: 'compensate-completed' }));
}

/**
 * An action that runs the compensation of a completed `handler` step, with the step's
 * input and result. Its outcome comes back as `<handler>.compensated` or
 * `<handler>.compensationFailed`.
 */
export function compensate<
  TInput,
  TOutput,
  TContext extends MachineContext,
  TExpressionEvent extends EventObject,
  TParams extends ParameterizedObject['params'] | undefined,
  TEvent extends EventObject,
>(
  handler: HandlerRef<TInput, TOutput>,
  step: (args: ActionArgs<TContext, TExpressionEvent, TEvent>) => {
    input: NoInfer<TInput>;
    result: NoInfer<TOutput>;
  },
): EffectAction<TContext, TExpressionEvent, TEvent, TParams> {
  return effectAction((args) => ({ kind: 'compensate', handler: handler.name, input: step(args) }));
}

/**
 * An action that publishes an event to NATS. It is written to the outbox in the same
 * transaction as the state change and published after commit, at least once, with a
 * `Nats-Msg-Id` that lets JetStream drop a repeat. The subject must match one of the
 * workflow's `emits` patterns.
 */
export function emitEvent<
  TContext extends MachineContext,
  TExpressionEvent extends EventObject,
  TParams extends ParameterizedObject['params'] | undefined,
  TEvent extends EventObject,
>(
  event: (args: ActionArgs<TContext, TExpressionEvent, TEvent>) => EmittedEvent,
): EffectAction<TContext, TExpressionEvent, TEvent, TParams> {
  return effectAction((args) => {
    const { subject, type, data } = event(args);
    return { kind: 'emit', subject, type, data: data ?? null };
  });
}

function effectAction<
  TContext extends MachineContext,
  TExpressionEvent extends EventObject,
  TParams extends ParameterizedObject['params'] | undefined,
  TEvent extends EventObject,
>(
  resolve: (args: ActionArgs<TContext, TExpressionEvent, TEvent>) => Effect,
): EffectAction<TContext, TExpressionEvent, TEvent, TParams> {
  const action = (() => {}) as unknown as EffectAction<TContext, TExpressionEvent, TEvent, TParams> & Tagged;
  action[EFFECT] = (args) => resolve(args as unknown as ActionArgs<TContext, TExpressionEvent, TEvent>);
  return action;
}

/**
 * The effect an executable action stands for, or undefined for XState's own actions that
 * the pure transition has already taken care of. Delayed raises and their cancels become
 * durable timers: an in-memory `setTimeout` would not survive the step.
 */
export function effectOf(action: {
  type: string;
  params?: unknown;
  exec?: unknown;
  info: ActionArgs<MachineContext, EventObject, EventObject>;
}): Effect | undefined {
  const resolve = (action.exec as Tagged | undefined)?.[EFFECT];
  if (resolve) return resolve(action.info);
  const params = (action.params ?? {}) as {
    delay?: unknown;
    id?: unknown;
    event?: unknown;
    sendId?: unknown;
  };
  if (action.type === 'xstate.raise' && typeof params.delay === 'number') {
    const event = params.event as { type: string; data?: unknown };
    return { kind: 'timer', id: String(params.id ?? event.type), event, delayMs: params.delay };
  }
  if (action.type === 'xstate.cancel' && typeof params.sendId === 'string') {
    return { kind: 'cancel-timer', id: params.sendId };
  }
  return undefined;
}
