export { type LoadConfigOptions, loadConfig } from './load.ts';
export { type Config, type ConfigInput, configSchema, environmentVariables } from './schema.ts';
