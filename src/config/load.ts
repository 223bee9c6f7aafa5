import { existsSync, readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import type { z } from 'zod';
import { ConfigError } from '../errors/index.ts';
import { type Config, type ConfigInput, configSchema, environmentVariables } from './schema.ts';

export interface LoadConfigOptions {
  env?: NodeJS.ProcessEnv;
  /** A JSON config file; defaults to $STATEHOUSE_CONFIG, else ./statehouse.config.json when present. */
  file?: string;
  /** Highest precedence: values set by code (tests, embedding applications). */
  overrides?: ConfigInput;
}

type Tree = { [key: string]: unknown };

/**
 * Resolves the configuration once: defaults < config file < environment < overrides.
 * The result is frozen; an invalid value fails here with the variable or property name.
 */
export function loadConfig(options: LoadConfigOptions = {}): Config {
  const env = options.env ?? process.env;
  const merged: Tree = {};
  const origin = new Map<string, string>();

  const file = options.file ?? env.STATEHOUSE_CONFIG ?? defaultConfigFile();
  if (file) {
    const fromFile = readConfigFile(file);
    deepMerge(merged, fromFile);
    for (const path of leafPaths(fromFile)) origin.set(path, `${path} in ${file}`);
  }
  for (const [variable, path] of Object.entries(environmentVariables)) {
    const value = env[variable];
    if (value === undefined || value === '') continue;
    setPath(merged, path, value);
    origin.set(path, variable);
  }
  if (options.overrides) {
    deepMerge(merged, options.overrides as Tree);
    for (const path of leafPaths(options.overrides as Tree)) origin.set(path, path);
  }

  const parsed = configSchema.safeParse(merged);
  if (!parsed.success) throw new ConfigError(formatIssues(parsed.error, origin));
  return deepFreeze(parsed.data);
}

function defaultConfigFile(): string | undefined {
  const candidate = resolve('statehouse.config.json');
  return existsSync(candidate) ? candidate : undefined;
}

function readConfigFile(file: string): Tree {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (cause) {
    throw new ConfigError(`cannot read config file ${file}: ${(cause as Error).message}`, { cause });
  }
  try {
    const value: unknown = JSON.parse(text);
    if (value === null || typeof value !== 'object' || Array.isArray(value)) {
      throw new Error('the file must hold one JSON object');
    }
    return value as Tree;
  } catch (cause) {
    throw new ConfigError(`config file ${file} is not valid: ${(cause as Error).message}`, { cause });
  }
}

function formatIssues(error: z.ZodError, origin: Map<string, string>): string {
  const lines = error.issues.map((issue) => {
    const path = issue.path.join('.');
    const where = origin.get(path) ?? (path || 'config');
    return `  ${where}: ${issue.message}`;
  });
  return `invalid configuration:\n${lines.join('\n')}`;
}

function setPath(target: Tree, path: string, value: unknown): void {
  const keys = path.split('.');
  let node = target;
  for (const key of keys.slice(0, -1)) {
    if (typeof node[key] !== 'object' || node[key] === null) node[key] = {};
    node = node[key] as Tree;
  }
  node[keys[keys.length - 1]!] = value;
}

function deepMerge(target: Tree, source: Tree): void {
  for (const [key, value] of Object.entries(source)) {
    if (value !== null && typeof value === 'object' && !Array.isArray(value)) {
      if (typeof target[key] !== 'object' || target[key] === null) target[key] = {};
      deepMerge(target[key] as Tree, value as Tree);
    } else if (value !== undefined) {
      target[key] = value;
    }
  }
}

function leafPaths(tree: Tree, prefix = ''): string[] {
  return Object.entries(tree).flatMap(([key, value]) =>
    value !== null && typeof value === 'object' && !Array.isArray(value)
      ? leafPaths(value as Tree, `${prefix}${key}.`)
      : [`${prefix}${key}`],
  );
}

function deepFreeze<T>(value: T): T {
  if (value && typeof value === 'object') {
    for (const child of Object.values(value)) deepFreeze(child);
    Object.freeze(value);
  }
  return value;
}
