import type { NatsConnection } from '@nats-io/transport-node';
import type { Logger } from '../shared/logger.ts';

/**
 * Logs the NATS connection's ups and downs until it closes: a disconnect (the client then
 * reconnects with backoff, without limit), each reconnect, and server errors. Consumers and
 * publishers carry on once it is back; what was not acked is redelivered.
 */
export async function logNatsStatus(nats: NatsConnection, log: Logger): Promise<void> {
  let down: number | undefined;
  for await (const status of nats.status()) {
    switch (status.type) {
      case 'disconnect':
        down ??= Date.now();
        log.warn({ server: status.server }, 'NATS connection lost; reconnecting');
        break;
      case 'reconnect':
        log.info(
          { server: status.server, downMs: down === undefined ? undefined : Date.now() - down },
          'NATS connection back',
        );
        down = undefined;
        break;
      case 'error':
        log.error({ err: status.error }, 'NATS server error');
        break;
      case 'staleConnection':
        log.warn('NATS connection stale (no answer to pings); reconnecting');
        break;
      default:
        break;
    }
  }
}
