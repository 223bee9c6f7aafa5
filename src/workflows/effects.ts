import type { ActionArgs, ActionFunction, EventObject, MachineContext, ParameterizedObject } from 'xstate';
import type { z } from 'zod';

/**
 * What a transition asks the engine to do once its step has committed: run a handler,
 * or run its compensation (`input` is then `{ input, result }` of the step to undo).
 */
export type Effect = { kind: 'run' | 'compensate'; handler: string; input: unknown };

/** The part of a handler definition a machine needs: its name and the shape of its input. */
export interface HandlerRef<TInput = unknown, TOutput = unknown> {
  readonly name: string;
  readonly input: z.ZodType<TInput>;
  /** Only for typing `compensate(...)`: the handler's result type. */
  readonly __output?: TOutput;
}

const EFFECT = Symbol.for('statehouse.effect');

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
): ActionFunction<TContext, TExpressionEvent, TEvent, TParams, never, never, never, never, never> {
  return effectAction('run', handler.name, input);
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
): ActionFunction<TContext, TExpressionEvent, TEvent, TParams, never, never, never, never, never> {
  return effectAction('compensate', handler.name, step);
}

function effectAction<
  TContext extends MachineContext,
  TExpressionEvent extends EventObject,
  TParams extends ParameterizedObject['params'] | undefined,
  TEvent extends EventObject,
>(
  kind: Effect['kind'],
  handler: string,
  input: (args: ActionArgs<TContext, TExpressionEvent, TEvent>) => unknown,
): ActionFunction<TContext, TExpressionEvent, TEvent, TParams, never, never, never, never, never> {
  const action = (() => {}) as unknown as ActionFunction<
    TContext,
    TExpressionEvent,
    TEvent,
    TParams,
    never,
    never,
    never,
    never,
    never
  > &
    Tagged;
  action[EFFECT] = (args) => ({
    kind,
    handler,
    input: input(args as unknown as ActionArgs<TContext, TExpressionEvent, TEvent>),
  });
  return action;
}

/** The effect an executable action stands for, or undefined for XState's own actions. */
export function effectOf(action: {
  exec?: unknown;
  info: ActionArgs<MachineContext, EventObject, EventObject>;
}): Effect | undefined {
  const resolve = (action.exec as Tagged | undefined)?.[EFFECT];
  return resolve ? resolve(action.info) : undefined;
}
