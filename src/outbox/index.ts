export { OutboxRelay, type OutboxRelayOptions } from './relay.ts';
export { type OutboxEntry, writeOutbox } from './write.ts';
