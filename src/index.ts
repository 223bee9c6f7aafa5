// The public surface of statehouse. Anything not exported here is internal.
export { type Config, type ConfigInput, loadConfig } from './config/index.ts';
export { migrate } from './db/index.ts';
export { Engine, type EngineOptions } from './engine/index.ts';
export {
  ConfigError,
  type ErrorCode,
  NonRetryableError,
  ServiceUnavailableError,
  StatehouseError,
  VersionConflictError,
} from './errors/index.ts';
export { defineHandler, type Handler, type HandlerContext, type RetryPolicy } from './jobs/index.ts';
export { resolveServices, type Services } from './services/index.ts';
// The event store on its own: append with an expected version, read one entity, read the log.
export {
  type AppendResult,
  type AppendToStreamOptions,
  appendToStream,
  type LogPage,
  type LogPosition,
  type NewEvent,
  readGlobalLog,
  readStream,
  START_OF_LOG,
  type StoredEvent,
} from './store/index.ts';
export {
  compensate,
  compensateCompleted,
  defineWorkflow,
  emitEvent,
  type RunHandlerOptions,
  runHandler,
  type Workflow,
  WorkflowRegistry,
} from './workflows/index.ts';
