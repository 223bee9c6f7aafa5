export { compensate, type Effect, effectOf, type HandlerRef, runHandler } from './effects.ts';
export { type EventDefinition, type EventSpec, normalizeEventSpec, type Upcaster, upcast } from './events.ts';
export { type RouteMatch, WorkflowRegistry } from './registry.ts';
export { defineWorkflow, type SubjectRoute, type Workflow, type WorkflowOptions } from './workflow.ts';
