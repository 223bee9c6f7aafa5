export { appendCaused, appendCtes, appendEvents, encodeEvents, isDuplicateMessageError } from './append.ts';
export { type LogPage, type LogPosition, readGlobalLog, START_OF_LOG } from './global-log.ts';
export { groupByEntity, readStream } from './read.ts';
export { type AppendToStreamOptions, appendToStream } from './stream.ts';
export type { AppendedEvent, AppendResult, EventSource, NewEvent, StoredEvent } from './types.ts';
