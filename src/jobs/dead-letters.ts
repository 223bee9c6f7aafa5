import type pg from 'pg';
import { quoteIdent, withTransaction } from '../db/index.ts';
import type { Logger } from '../shared/logger.ts';
import { isDuplicateMessageError } from '../store/index.ts';
import type { JobOutcome, OutcomeRecorder } from './outcomes.ts';
import { type JobData, OUTCOME_ID_PREFIX } from './queues.ts';

/**
 * Most walks through the dead letters only look at those this recent. A full walk looks at
 * all of them: a process's first, the one after a walk that failed or found one held by an
 * operator, and one every `FULL_SWEEP_INTERVAL_MS` (for one whose outcome Postgres refused
 * for over an hour).
 */
const RECENT = '1 hour';
const FULL_SWEEP_INTERVAL_MS = 10 * 60_000;
/** Dead letters one pass (a page of a walk) looks at, by default. */
const SWEEP_LIMIT = 500;

/** Where a pass through the dead letters goes on: after this one, in (created_on, id) order. */
export interface SweepPosition {
  createdOn: string;
  id: string;
}

export interface SweepPass {
  /** Look at every dead letter, not only recent ones. */
  full: boolean;
  /** Go on after this one (the `next` of the pass before). */
  after?: SweepPosition | undefined;
  /** Dead letters looked at in this pass at most. */
  limit?: number;
}

export interface SweepResult {
  settled: number;
  /** Nothing left: none held back, none beyond the limit (false too when another process was sweeping). */
  complete: boolean;
  /** One was held by an operator (or settled meanwhile): a later pass must look again. */
  heldBack: boolean;
  /** The limit was reached: go on after this one. */
  next?: SweepPosition;
  /** Another process was sweeping: this one looked at nothing. */
  elsewhere?: true;
}

/**
 * The sweep's rounds, for a polling loop. A walk goes through the dead letters a page per
 * round: every one of them at start, after a walk that failed or left one held by an
 * operator, and every FULL_SWEEP_INTERVAL_MS; otherwise those of the last hour. A full walk
 * is due once `fullDueAt` has passed (0: at once).
 */
export function deadLetterSweepRounds(
  pool: pg.Pool,
  bossSchema: string,
  deadLetterQueues: readonly string[],
  outcomes: OutcomeRecorder,
  log: Logger,
): () => Promise<{ more: boolean }> {
  let walk: (SweepPass & { heldBack: boolean }) | undefined;
  let fullDueAt = 0;
  return async () => {
    walk ??= { full: Date.now() >= fullDueAt, heldBack: false };
    try {
      const result = await sweepDeadLetters(pool, bossSchema, deadLetterQueues, outcomes, log, walk);
      if (result.settled > 0) {
        log.warn({ settled: result.settled }, 'recorded the outcome of dead letters that had none');
      }
      walk.heldBack ||= result.heldBack;
      if (result.next) {
        walk.after = result.next;
        return { more: true };
      }
      // A full walk that got to its end; one given up because another process was
      // sweeping leaves the schedule as it was.
      if (walk.full && !result.elsewhere) fullDueAt = Date.now() + FULL_SWEEP_INTERVAL_MS;
      if (walk.heldBack) fullDueAt = 0;
    } catch (error) {
      // Dead letters may have arrived while it could not look.
      fullDueAt = 0;
      log.error({ err: error }, 'dead-letter sweep failed; it runs again');
    }
    walk = undefined;
    return { more: false };
  };
}

/**
 * Dead letters whose outcome never became an event: the worker died on the job's last
 * attempt (pg-boss expired it and moved it here), or recording the outcome failed. The
 * entity would wait forever; this records the outcome for them: `<handler>.done` when the
 * handler had finished (its output travelled in the dead letter), else `<handler>.failed`
 * with code JOB_LOST. One process sweeps at a time (a transaction-scoped advisory lock);
 * the outcome's message id makes a repeat a no-op anyway.
 */
export async function sweepDeadLetters(
  pool: pg.Pool,
  bossSchema: string,
  deadLetterQueues: readonly string[],
  outcomes: OutcomeRecorder,
  log: Logger,
  pass: SweepPass,
): Promise<SweepResult> {
  if (deadLetterQueues.length === 0) return { settled: 0, complete: true, heldBack: false };
  const limit = pass.limit ?? SWEEP_LIMIT;
  return withTransaction(
    pool,
    async (client): Promise<SweepResult> => {
      const { rows: lock } = await client.query<{ ok: boolean }>(
        `select pg_try_advisory_xact_lock(hashtext('statehouse.dead-letter-sweep:' || $1)) as ok`,
        [bossSchema],
      );
      // Another process sweeps now; this one saw nothing.
      if (!lock[0]?.ok) return { settled: 0, complete: false, heldBack: false, elsewhere: true };
      const unsettled = `from ${quoteIdent(bossSchema)}.job d
         where d.name = any($1::text[]) and d.state = 'created' and d.source_id is not null
           and not exists (select 1 from events e where e.message_id = $2 || d.source_id::text)
           -- Outcomes recorded before outcome ids were per job were keyed by the idempotency key.
           and not exists (select 1 from events e where e.message_id = $2 || (d.data->>'key'))`;
      // Found without locking, then taken by id: a dead letter an operator holds (a redrive
      // or retry in progress) is theirs to settle, and the difference tells that one was
      // left behind, without reading the dead letters a second time.
      const { rows: found } = await client.query<{ id: string; createdOn: string }>(
        // created_on as ISO 8601 text, microseconds and offset kept, whatever the session's
        // DateStyle: the next pass compares with it exactly.
        `select d.id, to_json(d.created_on) #>> '{}' as "createdOn" ${unsettled}
           and ($3 or d.created_on > now() - interval '${RECENT}')
           and ($4::timestamptz is null or (d.created_on, d.id) > ($4::timestamptz, $5::uuid))
         order by d.created_on, d.id
         limit $6`,
        [
          deadLetterQueues,
          OUTCOME_ID_PREFIX,
          pass.full,
          pass.after?.createdOn ?? null,
          pass.after?.id ?? null,
          limit,
        ],
      );
      if (found.length === 0) return { settled: 0, complete: true, heldBack: false };
      const { rows } = await client.query<{ sourceId: string; data: JobData; sourceOutput: unknown }>(
        `select d.source_id::text as "sourceId", d.data, d.source_output as "sourceOutput"
         ${unsettled} and d.id = any($3::uuid[])
         order by d.created_on, d.id
         for update of d skip locked`,
        [deadLetterQueues, OUTCOME_ID_PREFIX, found.map((row) => row.id)],
      );
      // One Postgres refuses is logged and tried again by the next pass that looks at it;
      // it does not make every pass look at all of them.
      const failed = await recordEach(client, rows.map(outcomeOf), outcomes, log);
      const heldBack = rows.length < found.length;
      // A full page: the next pass goes on after it, past any that could not be settled.
      const last = found[found.length - 1]!;
      const next = found.length === limit ? { createdOn: last.createdOn, id: last.id } : undefined;
      return {
        settled: rows.length - failed,
        complete: !heldBack && next === undefined,
        heldBack,
        ...(next ? { next } : {}),
      };
    },
    { alsoRetry: isDuplicateMessageError },
  );
}

/**
 * Records the outcomes together, or, when that fails, each on its own (a savepoint each),
 * so one that Postgres refuses does not hold back the others. Returns how many failed.
 */
async function recordEach(
  client: pg.ClientBase,
  all: readonly JobOutcome[],
  outcomes: OutcomeRecorder,
  log: Logger,
): Promise<number> {
  if (all.length === 0) return 0;
  const attempt = async (batch: readonly JobOutcome[]) => {
    await client.query('savepoint sweep_record');
    try {
      await outcomes.record(client, batch);
      await client.query('release savepoint sweep_record');
      return true;
    } catch (error) {
      await client.query('rollback to savepoint sweep_record');
      // A worker recorded the same outcome meanwhile: the whole pass runs again and skips it.
      if (isDuplicateMessageError(error)) throw error;
      if (batch.length === 1) {
        log.error({ err: error, jobId: batch[0]!.jobId }, 'could not record the outcome of a dead letter');
      }
      return false;
    }
  };
  if (await attempt(all)) return 0;
  let failed = 0;
  for (const one of all) if (!(await attempt([one]))) failed++;
  return failed;
}

/**
 * What a job whose outcome could not be recorded fails with: its dead letter carries it to
 * the sweep, which records it as it was (`outcomeOf` reads it back).
 */
export function unrecordedOutput(
  run: { ok: true; output: unknown } | { ok: false; error: Record<string, unknown> },
): Record<string, unknown> {
  return run.ok
    ? { message: 'the outcome could not be recorded', unrecorded: 'done', output: run.output }
    : { ...run.error, unrecorded: 'failed' };
}

/** Whether a job's output says its run succeeded but the outcome could not be recorded. */
export function succeededUnrecorded(output: unknown): output is { unrecorded: 'done'; output?: unknown } {
  return (output as { unrecorded?: unknown } | null)?.unrecorded === 'done';
}

function outcomeOf(row: { sourceId: string; data: JobData; sourceOutput: unknown }): JobOutcome {
  const output = row.sourceOutput as { unrecorded?: unknown; output?: unknown; message?: unknown } | null;
  if (succeededUnrecorded(output)) {
    return { jobId: row.sourceId, data: row.data, ok: true, payload: output.output ?? null };
  }
  if (output?.unrecorded === 'failed') {
    const { unrecorded: _, ...error } = output;
    return { jobId: row.sourceId, data: row.data, ok: false, payload: error };
  }
  return {
    jobId: row.sourceId,
    data: row.data,
    ok: false,
    payload: {
      name: 'JobLost',
      code: 'JOB_LOST',
      message: `the job ended without an outcome on its last attempt (its worker died or it outlived its expiry)${typeof output?.message === 'string' ? `: ${output.message}` : ''}`,
      detail: output ?? null,
    },
  };
}
