import { type Config, type ConfigInput, loadConfig } from '../../src/config/index.ts';

/** The names one measured run owns in NATS. */
export interface RunNames {
  stream: string;
  consumer: string;
  subjectPrefix: string;
  emitStream: string;
}

/**
 * The config of an engine a bench worker runs: nothing from the environment or a config
 * file, the run's own stream, consumer and prefix, warnings only, plus `overrides`.
 */
export function benchEngineConfig(
  names: RunNames,
  overrides: Omit<ConfigInput, 'nats' | 'log'> = {},
): Config {
  const { stream, consumer, subjectPrefix, emitStream } = names;
  return loadConfig({
    env: {},
    file: '',
    overrides: {
      ...overrides,
      nats: { stream, consumer, subjectPrefix, emitStream },
      log: { level: 'warn' },
    },
  });
}
