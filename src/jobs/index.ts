export {
  DEFAULT_RETRY,
  defineHandler,
  type Handler,
  type HandlerContext,
  type HandlerOptions,
  type RetryPolicy,
} from './handler.ts';
export {
  type JobFilter,
  JobOperations,
  type JobState,
  type JobSummary,
  type OperationResult,
} from './operations.ts';
export { deadLetterQueueName, type JobData, queueName } from './queues.ts';
export { JobRunner, type JobRunnerOptions } from './runner.ts';
