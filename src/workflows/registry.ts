import type { AnyStateMachine } from 'xstate';
import { ConfigError } from '../errors/index.ts';
import { upcast } from './events.ts';
import type { SubjectRoute, Workflow } from './workflow.ts';

export interface RouteMatch {
  workflow: Workflow;
  entityId: string;
}

/**
 * The workflows an engine serves. Several versions of one workflow may be registered so
 * entities in flight finish on the version they started with; new entities and routing use
 * the highest version.
 */
export class WorkflowRegistry {
  readonly #byName = new Map<string, Map<number, Workflow>>();
  /** The newest version of each: the dispatcher asks for every entity it steps. */
  readonly #latest = new Map<string, Workflow>();
  /** Made once: the registry does not change, and ingest and the dispatcher ask on every message and step. */
  readonly #names: readonly string[];
  readonly #current: readonly Workflow[];
  readonly #subjectPrefix: string;

  constructor(workflows: readonly Workflow[], options: { subjectPrefix?: string } = {}) {
    this.#subjectPrefix = options.subjectPrefix ?? '';
    for (const workflow of workflows) {
      const versions = this.#byName.get(workflow.name) ?? new Map<number, Workflow>();
      if (versions.has(workflow.version)) {
        throw new ConfigError(`workflow "${workflow.name}" version ${workflow.version} is registered twice`);
      }
      versions.set(workflow.version, workflow);
      this.#byName.set(workflow.name, versions);
      const latest = this.#latest.get(workflow.name);
      if (!latest || workflow.version > latest.version) this.#latest.set(workflow.name, workflow);
    }
    this.#names = [...this.#byName.keys()];
    this.#current = this.#names.map((name) => this.#latest.get(name)!);
  }

  get names(): readonly string[] {
    return this.#names;
  }

  /** The newest version of each workflow. */
  get current(): readonly Workflow[] {
    return this.#current;
  }

  latest(name: string): Workflow | undefined {
    return this.#latest.get(name);
  }

  /**
   * A stored event as its workflow's newest version declares it: data from an older schema
   * version goes through the upcasters and `schemaVersion` becomes the current one. Events of
   * unknown machines or types, or already current, are returned as they are. For reading
   * the event store directly (`readStream`, `readGlobalLog`); the dispatcher upcasts by the
   * entity's own machine version.
   */
  currentShape<E extends { machine: string; type: string; schemaVersion: number; data: unknown }>(
    event: E,
  ): E {
    const spec = this.latest(event.machine)?.events[event.type];
    if (!spec || event.schemaVersion >= spec.schemaVersion) return event;
    return {
      ...event,
      data: upcast(spec, event.schemaVersion, event.data),
      schemaVersion: spec.schemaVersion,
    };
  }

  get(name: string, version: number): Workflow | undefined {
    return this.#byName.get(name)?.get(version);
  }

  versions(name: string): number[] {
    return [...(this.#byName.get(name)?.keys() ?? [])].sort((a, b) => a - b);
  }

  machine(name: string, version: number): AnyStateMachine | undefined {
    return this.get(name, version)?.machine;
  }

  /** Every subject pattern served, with the configured prefix: what the JetStream stream must hold. */
  get subjects(): string[] {
    return [...new Set(this.current.flatMap((w) => w.routes.map((r) => this.#subjectPrefix + r.pattern)))];
  }

  /** Every subject pattern the workflows emit to, with the configured prefix: what the outbound stream holds. */
  get emittedSubjects(): string[] {
    return [...new Set(this.current.flatMap((w) => w.emits.map((e) => this.#subjectPrefix + e)))];
  }

  get subjectPrefix(): string {
    return this.#subjectPrefix;
  }

  /** Finds the workflow and entity id for a NATS subject, or undefined when nothing routes it. */
  route(subject: string): RouteMatch | undefined {
    if (!subject.startsWith(this.#subjectPrefix)) return undefined;
    const tokens = subject.slice(this.#subjectPrefix.length).split('.');
    for (const workflow of this.current) {
      for (const route of workflow.routes) {
        if (matches(route, tokens)) return { workflow, entityId: tokens[route.entityIdToken]! };
      }
    }
    return undefined;
  }
}

function matches(route: SubjectRoute, tokens: readonly string[]): boolean {
  for (let i = 0; i < route.tokens.length; i++) {
    const want = route.tokens[i];
    if (want === '>') return tokens.length > i;
    if (i >= tokens.length) return false;
    if (want !== '*' && want !== tokens[i]) return false;
  }
  return tokens.length === route.tokens.length;
}
