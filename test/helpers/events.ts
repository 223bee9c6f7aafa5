import type { StoredEvent } from '../../src/store/index.ts';

/** A stored event as the dispatcher reads it, for tests of the pure step; `overrides` set what matters. */
export function storedEvent(
  overrides: Partial<StoredEvent> & Pick<StoredEvent, 'machine' | 'entityId' | 'type'>,
): StoredEvent {
  const version = overrides.version ?? 1;
  return {
    position: version,
    version,
    schemaVersion: 1,
    data: null,
    metadata: {},
    messageId: `m${version}`,
    source: 'nats',
    subject: null,
    natsStream: null,
    natsSeq: null,
    publishedAt: null,
    recordedAt: new Date(0),
    ...overrides,
  };
}
