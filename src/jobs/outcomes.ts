import type pg from 'pg';
import type { EventSource } from '../store/index.ts';
import { appendEvents } from '../store/index.ts';
import { type JobData, OUTCOME_ID_PREFIX, outcomeMessageId, outcomeType } from './queues.ts';
import { onCompensationOutcome, recordSagaSteps, type SagaDeps, undoLateSteps } from './saga.ts';

/** The outcome event already recorded for each of these jobs that has one: its type, by job id. */
export async function recordedOutcomeTypes(
  db: pg.Pool | pg.ClientBase,
  jobIds: readonly string[],
): Promise<Map<string, string>> {
  if (jobIds.length === 0) return new Map();
  const { rows } = await db.query<{ messageId: string; type: string }>(
    'select message_id as "messageId", type from events where message_id = any($1::text[])',
    [jobIds.map(outcomeMessageId)],
  );
  return new Map(rows.map((row) => [row.messageId.slice(OUTCOME_ID_PREFIX.length), row.type]));
}

/** How one job ended, about to become its entity's next event. */
export interface JobOutcome {
  jobId: string;
  data: JobData;
  ok: boolean;
  /** The handler's output when ok, else the described error. */
  payload: unknown;
  /** `operator` when a person ended the job (cancel). */
  source?: Extract<EventSource, 'handler' | 'operator'>;
}

/**
 * Turns job outcomes into events, many in one statement, and moves sagas on. Callers own
 * the transaction: the runner records a whole batch of jobs in one, an operation records
 * its own change and the outcome together.
 */
export class OutcomeRecorder {
  readonly #notifyChannel: string;
  readonly #saga: SagaDeps;

  /** `saga`: where a saga's next undo goes; the job runner's own insert. */
  constructor(saga: SagaDeps) {
    this.#notifyChannel = saga.notifyChannel;
    this.#saga = saga;
  }

  get saga(): SagaDeps {
    return this.#saga;
  }

  /**
   * Whether recording these outcomes writes more than their events (a saga step, the next
   * undo): then it needs a transaction; otherwise `record` sends one statement.
   */
  static needsTransaction(outcomes: readonly JobOutcome[]): boolean {
    return outcomes.some((outcome) => followUpOf(outcome) !== undefined);
  }

  /** Records the outcomes; one already recorded (the same job id) is skipped, with its saga follow-up. */
  async record(client: pg.ClientBase, outcomes: readonly JobOutcome[]): Promise<void> {
    if (outcomes.length === 0) return;
    const { appended } = await appendEvents(
      client,
      outcomes.map(({ jobId, data, ok, payload, source }) => ({
        machine: data.machine,
        entityId: data.entityId,
        type: outcomeType(data, ok ? 'done' : 'failed'),
        data: payload ?? null,
        metadata: { idempotencyKey: data.key, jobId, causationPosition: data.causedBy.position },
        messageId: outcomeMessageId(jobId),
        source: source ?? 'handler',
      })),
      { notifyChannel: this.#notifyChannel },
    );
    // Most batches are plain runs: nothing more to do for them.
    const followUps = outcomes.map(followUpOf);
    if (!followUps.some(Boolean)) return;
    const fresh = new Map(appended.map((event) => [event.messageId, event]));
    const recorded = outcomes.flatMap((outcome, i) => {
      const event = fresh.get(outcomeMessageId(outcome.jobId));
      const followUp = followUps[i];
      return event && followUp ? [{ outcome, event, followUp }] : [];
    });
    // New steps first, in one statement: a saga moving on in the same batch sees them.
    const steps = recorded.filter(({ followUp }) => followUp === 'step');
    await recordSagaSteps(
      client,
      steps.map(({ outcome }) => ({ data: outcome.data, result: outcome.payload })),
    );
    await undoLateSteps(
      client,
      steps.map(({ outcome, event }) => ({
        data: outcome.data,
        cause: { position: event.position, version: event.version, type: outcomeType(outcome.data, 'done') },
      })),
      this.#saga,
    );
    for (const { outcome, event, followUp } of recorded) {
      const { data } = outcome;
      if (followUp !== 'saga' || !data.saga) continue;
      await onCompensationOutcome(
        client,
        { ...data, saga: data.saga },
        outcome.ok ? { ok: true } : { ok: false, error: outcome.payload, jobId: outcome.jobId },
        {
          position: event.position,
          version: event.version,
          type: outcomeType(data, outcome.ok ? 'done' : 'failed'),
        },
        this.#saga,
      );
    }
  }
}

/** What recording an outcome entails besides its event: a new saga step, or the saga's next move. */
function followUpOf({ data, ok }: JobOutcome): 'step' | 'saga' | undefined {
  if (data.kind === 'run' && data.compensable === true && ok) return 'step';
  if (data.kind === 'compensate' && data.saga) return 'saga';
  return undefined;
}
