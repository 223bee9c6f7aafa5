import type { AnyMachineSnapshot } from 'xstate';
import { describeError, StatehouseError } from '../errors/index.ts';
import { storableJson } from '../shared/json.ts';
import type { StoredEvent } from '../store/index.ts';
import {
  type Effect,
  effectOf,
  type JobEffect,
  subjectCovers,
  upcast,
  type Workflow,
  type WorkflowRegistry,
} from '../workflows/index.ts';
import { pureInitialTransition, pureTransition } from './pure.ts';

/** Every status an entity can have (the entities table's check constraint lists the same). */
export const ENTITY_STATUSES = ['active', 'done', 'failed', 'compensating', 'needs-attention'] as const;
export type EntityStatus = (typeof ENTITY_STATUSES)[number];

/** Every status but `done`: the entities whose machine version still matters. */
export const LIVE_STATUSES: readonly EntityStatus[] = ENTITY_STATUSES.filter((s) => s !== 'done');

export interface EntityRow {
  machine: string;
  entityId: string;
  machineVersion: number | null;
  snapshot: unknown;
  appliedVersion: number;
}

/** What a step reads of a stored event. */
export type StepEvent = Pick<StoredEvent, 'position' | 'version' | 'type' | 'schemaVersion' | 'data'>;

export interface PlannedEffect {
  effect: Effect;
  /** Stable across retries and re-deliveries: the handler's idempotency key. */
  key: string;
  causedBy: StepEvent;
}

export interface StepResult {
  machineVersion: number | null;
  /** The snapshot to store, as JSON text (`null` for none): serialised once, stored as is. */
  snapshotJson: string;
  state: unknown;
  status: EntityStatus;
  appliedVersion: number;
  effects: PlannedEffect[];
  error: Record<string, unknown> | null;
}

/**
 * Applies an entity's pending events to its snapshot, purely: nothing is written and no
 * effect runs here. A machine that throws stops the entity at the event that made it
 * throw; the events before it stay applied.
 */
export function applyEvents(
  registry: WorkflowRegistry,
  entity: EntityRow,
  events: readonly StepEvent[],
  acceptsHandler: (effect: JobEffect) => boolean = () => true,
): StepResult {
  const resolved = resolveVersion(registry, entity);
  const { version, workflow } = resolved;
  const machine = workflow?.machine;
  const result: StepResult = {
    machineVersion: version,
    // Set on the way out (see `withStartSnapshot`): serialised once, and only when it is needed.
    snapshotJson: 'null',
    state: null,
    status: 'active',
    appliedVersion: entity.appliedVersion,
    effects: [],
    error: null,
  };
  if (!machine) {
    const known = registry.versions(entity.machine);
    return withStartSnapshot(entity, resolved.snapshot, events[0]?.version, {
      ...result,
      status: 'failed',
      error: {
        name: 'MachineNotRegistered',
        message: `machine "${entity.machine}" version ${version ?? '?'} is not registered (registered: ${known.join(', ') || 'none'}); register it again or migrate the entity`,
        eventVersion: events[0]?.version,
      },
    });
  }

  let snapshot: AnyMachineSnapshot | undefined =
    resolved.snapshot === null || resolved.snapshot === undefined
      ? undefined
      : machine.resolveState(resolved.snapshot as never);
  let applied: AnyMachineSnapshot | undefined;
  for (const event of events) {
    try {
      const planned: PlannedEffect[] = [];
      if (!snapshot) {
        const [initial, actions] = pureInitialTransition(machine, { entityId: entity.entityId });
        snapshot = initial;
        planned.push(...plan(actions, entity, event, 0));
      }
      const spec = workflow?.events[event.type];
      const data = spec ? upcast(spec, event.schemaVersion, event.data) : event.data;
      const [next, actions] = pureTransition(machine, snapshot, { type: event.type, data } as never);
      planned.push(...plan(actions, entity, event, planned.length));
      for (const { effect } of planned) {
        if (
          effect.kind === 'emit' &&
          !workflow!.emits.some((pattern) => subjectCovers(pattern, effect.subject))
        ) {
          throw new StatehouseError(
            'USAGE',
            `machine "${entity.machine}" emitted to "${effect.subject}", which none of its emits patterns (${workflow!.emits.join(', ') || 'none'}) covers; add it to the workflow's emits`,
          );
        }
      }
      const unknown = planned.find(
        (p): p is PlannedEffect & { effect: JobEffect } =>
          (p.effect.kind === 'run' || p.effect.kind === 'compensate') && !acceptsHandler(p.effect),
      );
      if (unknown) {
        throw new StatehouseError(
          'HANDLER_NOT_FOUND',
          `machine "${entity.machine}" asked to ${unknown.effect.kind} handler "${unknown.effect.handler}"${unknown.effect.compensable ? ' as a compensable step' : ''}, which this engine does not register${unknown.effect.kind === 'compensate' || unknown.effect.compensable ? ' with a compensate function' : ''}; add it to the engine's handlers`,
        );
      }
      snapshot = next;
      applied = next;
      result.state = next.value;
      result.status = statusOf(next);
      result.appliedVersion = event.version;
      result.effects.push(...planned);
    } catch (error) {
      result.status = 'failed';
      result.error = { ...describeError(error), eventVersion: event.version, eventType: event.type };
      break;
    }
  }
  if (!applied) return withStartSnapshot(entity, resolved.snapshot, events[0]?.version, result);
  // Persisted once per step, not per event: it is the costliest part of applying one.
  // The text is what is stored and what a later step restores from, so no round trip is needed.
  const stored = storableSnapshot(entity.machine, () => machine.getPersistedSnapshot(applied));
  if (typeof stored === 'string') return { ...result, snapshotJson: stored };
  return unstorable(entity, stored, result.appliedVersion);
}

/**
 * Nothing of a step can be kept when its snapshot cannot be stored: the entity stays as it
 * was stored (snapshot and version), failed, with no effects, and resumes from there once
 * the machine is fixed.
 */
function unstorable(entity: EntityRow, error: StatehouseError, eventVersion: number | undefined): StepResult {
  return {
    machineVersion: entity.machineVersion,
    snapshotJson: JSON.stringify(entity.snapshot ?? null),
    state: null,
    status: 'failed',
    appliedVersion: entity.appliedVersion,
    effects: [],
    error: { ...describeError(error), eventVersion },
  };
}

/** `result` with the snapshot the entity had at the start of the step: as stored, or migrated. */
function withStartSnapshot(
  entity: EntityRow,
  start: unknown,
  eventVersion: number | undefined,
  result: StepResult,
): StepResult {
  if (start === entity.snapshot) return { ...result, snapshotJson: JSON.stringify(entity.snapshot ?? null) };
  const text = storableSnapshot(entity.machine, () => start ?? null);
  return typeof text === 'string'
    ? { ...result, snapshotJson: text }
    : unstorable(entity, text, eventVersion);
}

/**
 * Which machine version an entity runs on. An entity keeps the version it started with
 * while that version is registered; when it is not, and the newest version has a snapshot
 * migration from it, the snapshot is migrated and the entity moves to the newest.
 */
function resolveVersion(
  registry: WorkflowRegistry,
  entity: EntityRow,
): { version: number | null; workflow: Workflow | undefined; snapshot: unknown } {
  const latest = registry.latest(entity.machine);
  if (entity.machineVersion === null) {
    return { version: latest?.version ?? null, workflow: latest, snapshot: entity.snapshot };
  }
  const own = registry.get(entity.machine, entity.machineVersion);
  if (own) return { version: own.version, workflow: own, snapshot: entity.snapshot };
  const migration = latest?.migrations[entity.machineVersion];
  if (latest && migration) {
    const snapshot =
      entity.snapshot === null || entity.snapshot === undefined
        ? entity.snapshot
        : migration(entity.snapshot);
    return { version: latest.version, workflow: latest, snapshot };
  }
  return { version: entity.machineVersion, workflow: undefined, snapshot: entity.snapshot };
}

function plan(
  actions: ReadonlyArray<Parameters<typeof effectOf>[0]>,
  entity: EntityRow,
  event: StepEvent,
  offset: number,
): PlannedEffect[] {
  const planned: PlannedEffect[] = [];
  for (const action of actions) {
    const effect = effectOf(action);
    if (!effect) continue;
    const index = offset + planned.length;
    planned.push({
      effect,
      key: `${entity.machine}:${entity.entityId}:${event.version}:${index}`,
      causedBy: event,
    });
  }
  return planned;
}

/**
 * The persisted snapshot as JSON text, or the error saying why Postgres cannot store it:
 * a context holding something JSON cannot carry (a BigInt, a cycle), a NUL character or an
 * unpaired surrogate.
 */
function storableSnapshot(machine: string, persisted: () => unknown): string | StatehouseError {
  const json = storableJson(persisted);
  if ('text' in json) return json.text;
  if ('notJson' in json) {
    return new StatehouseError(
      'SNAPSHOT_INVALID',
      `machine "${machine}" made a snapshot that is not JSON (${json.notJson.message}); keep its context to plain data, then resume the entity`,
      { cause: json.notJson },
    );
  }
  return new StatehouseError(
    'SNAPSHOT_INVALID',
    `machine "${machine}" made a snapshot with ${json.unstorable} in a string, which Postgres cannot store; strip it, then resume the entity`,
  );
}

/** Machines opt into the richer statuses with state tags. */
function statusOf(snapshot: AnyMachineSnapshot): EntityStatus {
  if (snapshot.status === 'done') return 'done';
  if (snapshot.hasTag('needs-attention')) return 'needs-attention';
  if (snapshot.hasTag('compensating')) return 'compensating';
  return 'active';
}
