export { appendEvents, isDuplicateMessageError } from './append.ts';
export { entityKey, readPendingEvents, readStream } from './read.ts';
export type { AppendedEvent, AppendResult, EventSource, NewEvent, StoredEvent } from './types.ts';
