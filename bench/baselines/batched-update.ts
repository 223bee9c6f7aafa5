// Baseline "batched-update": the limit for applying stored events to entity snapshots.
// A plain pg client does the same snapshot updates as statehouse's dispatcher, on the same
// tables and pending events, with the same batch size and number of loops: per
// transaction it claims a batch of pending entities (FOR UPDATE SKIP LOCKED) and reads
// their unapplied events in one statement, appends each event's `n` to the entity's
// context in plain JS, and writes every snapshot and applied_version with one multi-row
// UPDATE. No XState, no effects, no outbox or timers. Like statehouse, it first applies the
// warm-up machine's events, untimed.
import pg from 'pg';
import { actorsInput, MACHINE, SCHEMA, WARMUP_MACHINE } from '../consumers/statehouse-actors.ts';
import { defineTask } from '../lib/task.ts';

const CLAIM_AND_READ_SQL = `
with claimed as (
  select entity_id, snapshot, applied_version
  from entities
  where pending_since is not null and status <> 'failed' and applied_version < last_version
    and machine = $1
  order by pending_since
  limit $2
  for update skip locked
)
select c.entity_id as id, c.snapshot, c.applied_version as applied,
       coalesce(jsonb_agg(e.data order by e.version), '[]'::jsonb) as entries,
       max(e.version) as version
from claimed c
join events e on e.machine = $1 and e.entity_id = c.entity_id and e.version > c.applied_version
group by c.entity_id, c.snapshot, c.applied_version`;

const SAVE_SQL = `
update entities e
set snapshot = u.snapshot, applied_version = u.applied_version, updated_at = now(),
    pending_since = case when u.applied_version < e.last_version then now() end
from unnest($2::text[], $3::jsonb[], $4::int[]) as u(entity_id, snapshot, applied_version)
where e.machine = $1 and e.entity_id = u.entity_id`;

interface Claimed {
  id: string;
  snapshot: { context: { entries: number[] } } | null;
  applied: number;
  entries: Array<{ n: number }>;
  version: number;
}

export default defineTask({
  input: actorsInput,
  async run(input, clock) {
    const clients = await Promise.all(
      Array.from({ length: input.concurrency }, async () => {
        const c = new pg.Client({
          connectionString: input.databaseUrl,
          application_name: 'bench-batched-update',
        });
        await c.connect();
        await c.query(`set search_path = ${SCHEMA}`);
        return c;
      }),
    );
    clock.notes.batchSize = input.batchSize;
    clock.notes.concurrency = input.concurrency;
    const loop = async (client: pg.Client, machine: string, timed: boolean) => {
      for (;;) {
        const t = performance.now();
        await client.query('begin');
        const { rows } = await client.query<Claimed>({
          name: 'claim',
          text: CLAIM_AND_READ_SQL,
          values: [machine, input.batchSize],
        });
        if (rows.length === 0) {
          await client.query('commit');
          return;
        }
        let applied = 0;
        const snapshots: string[] = [];
        for (const row of rows) {
          const entries = row.snapshot ? [...row.snapshot.context.entries] : [];
          for (const e of row.entries) entries.push(e.n);
          applied += row.version - row.applied;
          snapshots.push(JSON.stringify({ status: 'active', value: 'open', context: { entries } }));
        }
        await client.query({
          name: 'save',
          text: SAVE_SQL,
          values: [machine, rows.map((r) => r.id), snapshots, rows.map((r) => r.version)],
        });
        await client.query('commit');
        if (timed) clock.commit(applied, performance.now() - t);
      }
    };
    // Untimed, as statehouse's: the same work on the warm-up machine's entities first.
    if (input.warmupEvents > 0) await Promise.all(clients.map((c) => loop(c, WARMUP_MACHINE, false)));
    await clock.start();
    await Promise.all(clients.map((c) => loop(c, MACHINE, true)));
    await clock.finish();
    await Promise.all(clients.map((c) => c.end()));
  },
});
