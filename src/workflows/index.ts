export {
  compensate,
  compensateCompleted,
  type Effect,
  type EmitEffect,
  type EmittedEvent,
  effectOf,
  emitEvent,
  type HandlerRef,
  type JobEffect,
  type RunHandlerOptions,
  runHandler,
  type SagaEffect,
  type TimerEffect,
} from './effects.ts';
export { type EventDefinition, type EventSpec, normalizeEventSpec, type Upcaster, upcast } from './events.ts';
export { type RouteMatch, WorkflowRegistry } from './registry.ts';
export { subjectCovers } from './subjects.ts';
export {
  defineWorkflow,
  type SnapshotMigration,
  type SubjectRoute,
  type Workflow,
  type WorkflowOptions,
} from './workflow.ts';
