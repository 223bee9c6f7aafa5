import { z } from 'zod';
import { ConfigError } from '../errors/index.ts';

/** Turns data of schema version `n` into version `n + 1`. */
export type Upcaster = (data: unknown) => unknown;

/**
 * An event type a workflow accepts. `schemaVersion` is the current version; publishers
 * may still send older ones, which are stored as sent and upcast to the current version
 * whenever they are read (by the machine, or by validation at ingest).
 */
export interface EventSpec {
  readonly schemaVersion: number;
  readonly schema: z.ZodType;
  /** `upcasters[n]` takes version n to n + 1; one for every version below the current. */
  readonly upcasters: Readonly<Record<number, Upcaster>>;
}

export type EventDefinition =
  | z.ZodType
  | { schemaVersion: number; schema: z.ZodType; upcasters?: Readonly<Record<number, Upcaster>> };

export function normalizeEventSpec(where: string, type: string, definition: EventDefinition): EventSpec {
  if (definition instanceof z.ZodType)
    return Object.freeze({ schemaVersion: 1, schema: definition, upcasters: {} });
  const { schemaVersion, schema, upcasters = {} } = definition;
  if (!Number.isInteger(schemaVersion) || schemaVersion < 1) {
    throw new ConfigError(`${where}: event "${type}" schemaVersion must be a whole number ≥ 1`);
  }
  for (let version = 1; version < schemaVersion; version++) {
    if (typeof upcasters[version] !== 'function') {
      throw new ConfigError(
        `${where}: event "${type}" is at schema version ${schemaVersion} but has no upcaster from version ${version}; add upcasters[${version}]`,
      );
    }
  }
  return Object.freeze({ schemaVersion, schema, upcasters: Object.freeze({ ...upcasters }) });
}

/** Brings data of `version` up to the spec's current version. */
export function upcast(spec: EventSpec, version: number, data: unknown): unknown {
  let current = data;
  for (let v = version; v < spec.schemaVersion; v++) current = spec.upcasters[v]!(current);
  return current;
}
