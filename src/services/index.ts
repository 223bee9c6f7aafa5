import type { Config } from '../config/index.ts';
import type { Logger } from '../shared/logger.ts';
import { type NatsService, resolveNats } from './nats.ts';
import { type PostgresService, resolvePostgres } from './postgres.ts';

export { type NatsService, resolveNats } from './nats.ts';
export { ensureDatabase, type PostgresService, resolvePostgres } from './postgres.ts';
export { portAnswers } from './probe.ts';

export interface Services {
  postgres: PostgresService;
  nats: NatsService;
  stop(): Promise<void>;
}

/** Reaches (or starts) Postgres and NATS as the README's Services section says. */
export async function resolveServices(config: Config, log: Logger): Promise<Services> {
  const common = { autoStart: config.services.autoStart, dataDir: config.services.dataDir, log };
  const postgres = await resolvePostgres({ ...common, url: config.database.url });
  let nats: NatsService;
  try {
    nats = await resolveNats({ ...common, url: config.nats.url });
  } catch (error) {
    await postgres.stop();
    throw error;
  }
  return {
    postgres,
    nats,
    async stop() {
      await nats.stop();
      await postgres.stop();
    },
  };
}
