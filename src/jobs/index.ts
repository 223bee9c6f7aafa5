export {
  DEFAULT_RETRY,
  defineHandler,
  type Handler,
  type HandlerContext,
  type HandlerOptions,
  type RetryPolicy,
} from './handler.ts';
export { deadLetterQueueName, type JobData, JobRunner, type JobRunnerOptions, queueName } from './runner.ts';
