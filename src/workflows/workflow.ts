import type { AnyStateMachine } from 'xstate';
import { z } from 'zod';
import { ConfigError } from '../errors/index.ts';
import { type EventDefinition, type EventSpec, normalizeEventSpec } from './events.ts';

export interface WorkflowOptions<TMachine extends AnyStateMachine> {
  /** The entity type, e.g. `order`; also names the machine in the store and the CLI. */
  name: string;
  /** Bumped when a change to the machine would misread snapshots made by the previous one. */
  version: number;
  machine: TMachine;
  /** NATS subject patterns this workflow takes, e.g. `orders.*.>`. */
  subjects: string | readonly string[];
  /** Which subject token holds the entity id; defaults to the first `*` of the pattern. */
  entityIdToken?: number;
  /**
   * The external event types accepted, each with the zod schema of its `data`, or with
   * `{ schemaVersion, schema, upcasters }` once its shape has changed over time.
   */
  events: Readonly<Record<string, EventDefinition>>;
  /** Subject patterns the machine may emit to with `emitEvent`, e.g. `order-events.*.>`. */
  emits?: string | readonly string[];
  /**
   * Snapshot migrations into this version, keyed by the version they migrate from. An
   * entity whose own version is no longer registered is migrated with the one for its
   * version; with none, the engine refuses to start.
   */
  migrations?: Readonly<Record<number, SnapshotMigration>>;
}

/** Turns a persisted snapshot of an older machine version into one of this version. */
export type SnapshotMigration = (snapshot: unknown) => unknown;

export interface Workflow<TMachine extends AnyStateMachine = AnyStateMachine> {
  readonly name: string;
  readonly version: number;
  readonly machine: TMachine;
  readonly routes: readonly SubjectRoute[];
  readonly events: Readonly<Record<string, EventSpec>>;
  readonly emits: readonly string[];
  readonly migrations: Readonly<Record<number, SnapshotMigration>>;
}

export interface SubjectRoute {
  /** The pattern as written, before any configured subject prefix. */
  readonly pattern: string;
  readonly tokens: readonly string[];
  readonly entityIdToken: number;
}

const nameSchema = z
  .string()
  .regex(
    /^[a-z][a-zA-Z0-9-]{0,62}$/,
    'starts with a lower-case letter; letters, digits and -; at most 63 characters',
  );
const tokenSchema = z.string().regex(/^([A-Za-z0-9_-]+|\*|>)$/);

export function defineWorkflow<TMachine extends AnyStateMachine>(
  options: WorkflowOptions<TMachine>,
): Workflow<TMachine> {
  const where = `workflow "${options.name}"`;
  const name = nameSchema.safeParse(options.name);
  if (!name.success) throw new ConfigError(`${where}: name must be ${name.error.issues[0]?.message}`);
  if (!Number.isInteger(options.version) || options.version < 1) {
    throw new ConfigError(`${where}: version must be a whole number ≥ 1, got ${String(options.version)}`);
  }
  const patterns = typeof options.subjects === 'string' ? [options.subjects] : [...options.subjects];
  if (patterns.length === 0)
    throw new ConfigError(`${where}: subjects must name at least one subject pattern`);
  const routes = patterns.map((pattern) => parseRoute(where, pattern, options.entityIdToken));
  if (Object.keys(options.events).length === 0) {
    throw new ConfigError(`${where}: events must list at least one event type with its data schema`);
  }
  const emits =
    options.emits === undefined
      ? []
      : typeof options.emits === 'string'
        ? [options.emits]
        : [...options.emits];
  for (const pattern of emits) {
    const tokens = pattern.split('.');
    if (tokens.some((t) => !tokenSchema.safeParse(t).success) || tokens.slice(0, -1).includes('>')) {
      throw new ConfigError(`${where}: emits pattern "${pattern}" is not a valid NATS subject pattern`);
    }
  }
  return Object.freeze({
    name: options.name,
    emits: Object.freeze(emits),
    migrations: Object.freeze({ ...(options.migrations ?? {}) }),
    version: options.version,
    machine: options.machine,
    routes,
    events: Object.freeze(
      Object.fromEntries(
        Object.entries(options.events).map(([type, definition]) => [
          type,
          normalizeEventSpec(where, type, definition),
        ]),
      ),
    ),
  });
}

function parseRoute(where: string, pattern: string, entityIdToken: number | undefined): SubjectRoute {
  const tokens = pattern.split('.');
  const bad = tokens.find((token) => !tokenSchema.safeParse(token).success);
  if (bad !== undefined || tokens.slice(0, -1).includes('>')) {
    throw new ConfigError(
      `${where}: subject pattern "${pattern}" is not a valid NATS pattern (tokens of letters, digits, _ and -, or * and a final >)`,
    );
  }
  const index = entityIdToken ?? tokens.indexOf('*');
  if (index < 0 || tokens[index] !== '*') {
    throw new ConfigError(
      `${where}: subject pattern "${pattern}" needs a * token for the entity id (or entityIdToken pointing at one)`,
    );
  }
  return Object.freeze({ pattern, tokens: Object.freeze(tokens), entityIdToken: index });
}
