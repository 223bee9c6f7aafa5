export { BatchReader } from './batches.ts';
export {
  type ParseOptions,
  type ParseResult,
  parseMessage,
  type QuarantineReason,
  type RawMessage,
} from './envelope.ts';
export { Ingestor, type IngestorOptions } from './ingestor.ts';
export {
  dropQuarantined,
  getQuarantined,
  listQuarantine,
  type QuarantinedMessage,
  type QuarantineRow,
  quarantineMessages,
  type RedriveOptions,
  type RedriveOutcome,
  redriveAllHeld,
  redriveQuarantined,
} from './quarantine.ts';
export {
  type ConsumerSettings,
  ensureConsumer,
  ensureStream,
  type StreamSettings,
} from './stream.ts';
