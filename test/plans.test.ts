import { jetstream } from '@nats-io/jetstream';
import type pg from 'pg';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { dispatchChannel, jobsChannel } from '../src/db/index.ts';
import { checkVersionsInUse, warnOfUnregisteredBacklog } from '../src/engine/engine.ts';
import { listEntities } from '../src/entities/index.ts';
import { JobOperations } from '../src/jobs/index.ts';
import { resumeStepsMissingHandlers } from '../src/jobs/saga.ts';
import { OutboxRelay } from '../src/outbox/index.ts';
import { createLogger } from '../src/shared/logger.ts';
import { WorkflowRegistry } from '../src/workflows/index.ts';
import { ledgerWorkflow } from './fixtures/ledger-app.ts';
import { createTestContext, type TestContext } from './helpers/context.ts';

const MACHINES = ['plan-a', 'plan-b', 'plan-c'];
/** The workflows of an engine that registers those machines. */
const registry = new WorkflowRegistry(MACHINES.map((name) => ledgerWorkflow({ guardThrows: false, name })));
const ENTITIES = 60_000;
const STEPS = 60_000;

interface Statement {
  text: string;
  values: unknown[];
}

/** `target` with each statement sent through its `query` written down, to EXPLAIN afterwards. */
function recording<T extends pg.Pool | pg.ClientBase>(target: T): { db: T; statements: Statement[] } {
  const statements: Statement[] = [];
  const db = new Proxy(target, {
    get(object, property, receiver) {
      if (property !== 'query') return Reflect.get(object, property, receiver);
      return (config: string | { text: string; values?: unknown[] }, values?: unknown[]) => {
        statements.push(
          typeof config === 'string'
            ? { text: config, values: values ?? [] }
            : { text: config.text, values: config.values ?? values ?? [] },
        );
        return (object.query as (...args: unknown[]) => unknown)(config, values);
      };
    },
  });
  return { db, statements };
}

/** The tables a statement's plan reads from start to end (Seq Scan). */
async function seqScanned(client: pg.ClientBase, statement: Statement): Promise<string[]> {
  const { rows } = await client.query<{ 'QUERY PLAN': Array<{ Plan: PlanNode }> }>(
    `explain (format json) ${statement.text}`,
    statement.values,
  );
  const tables: string[] = [];
  const walk = (node: PlanNode) => {
    if (node['Node Type'] === 'Seq Scan') tables.push(node['Relation Name'] ?? '?');
    for (const child of node.Plans ?? []) walk(child);
  };
  walk(rows[0]!['QUERY PLAN'][0]!.Plan);
  return tables;
}

/** Buffers (table and index pages) a statement reads when run: how much of the data it touches. */
async function pagesRead(client: pg.ClientBase, statement: Statement): Promise<number> {
  const { rows } = await client.query<{ 'QUERY PLAN': Array<{ Plan: Record<string, number> }> }>(
    `explain (analyze, buffers, format json) ${statement.text}`,
    statement.values,
  );
  const plan = rows[0]!['QUERY PLAN'][0]!.Plan;
  return (plan['Shared Hit Blocks'] ?? 0) + (plan['Shared Read Blocks'] ?? 0);
}

interface PlanNode {
  'Node Type': string;
  'Relation Name'?: string;
  Plans?: PlanNode[];
}

describe('queries over a long history', () => {
  let t: TestContext;
  beforeAll(async () => {
    t = await createTestContext();
    // Nine in ten entities done, each changed at its own time; saga steps nearly all done.
    await t.pool.query(
      `insert into entities (machine, entity_id, machine_version, status, last_version, applied_version, updated_at)
       select ($1::text[])[1 + g % 3], 'p-' || g, 1,
              case when g % 10 = 0 then (array['active', 'failed', 'compensating', 'needs-attention'])[1 + (g / 10) % 4]
                   else 'done' end,
              3, 3, now() - make_interval(secs => g)
       from generate_series(1, $2::int) g`,
      [MACHINES, ENTITIES],
    );
    await t.pool.query(
      `insert into saga_steps (step_key, machine, entity_id, handler, input, result, status, planned_version)
       select 'plan:' || g, 'plan-a', 'p-' || g, 'reserveStock', '{}', '{}',
              case when g % 20000 = 0 then 'compensation-failed' else 'done' end, 1
       from generate_series(1, $1::int) g`,
      [STEPS],
    );
    await t.pool.query('analyze entities; analyze saga_steps');
  }, 60_000);
  afterAll(() => t.cleanup());

  async function expectIndexed(statements: Statement[], tables: string[]) {
    expect(statements.length).toBeGreaterThan(0);
    const client = await t.pool.connect();
    try {
      for (const statement of statements) {
        const scanned = await seqScanned(client, statement);
        expect(
          scanned.filter((table) => tables.includes(table)),
          statement.text,
        ).toEqual([]);
      }
    } finally {
      client.release();
    }
  }

  it('the entities list reads the newest of each machine and status, and gives what sorting them all would', async () => {
    const reference = async (machine: string | null, status: string | null, limit: number) =>
      (
        await t.pool.query<{ entityId: string }>(
          `select entity_id as "entityId" from entities
           where ($1::text is null or machine = $1) and ($2::text is null or status = $2)
           order by updated_at desc limit $3`,
          [machine, status, limit],
        )
      ).rows.map((row) => row.entityId);
    const filters = [
      { machine: null, status: null, limit: 50 },
      { machine: 'plan-b', status: null, limit: 30 },
      { machine: null, status: 'needs-attention', limit: 40 },
      { machine: 'plan-c', status: 'failed', limit: 10 },
      { machine: 'plan-a', status: 'done', limit: 5 },
    ] as const;
    for (const { machine, status, limit } of filters) {
      const { db, statements } = recording(t.pool);
      const listed = await listEntities(db, {
        ...(machine ? { machine } : {}),
        ...(status ? { status } : {}),
        limit,
      });
      expect(listed.map((e) => e.entityId)).toEqual(await reference(machine, status, limit));
      await expectIndexed(statements, ['entities']);
    }
  });

  it('the start-up check of machine versions in use reads only the entities not done', async () => {
    const { db, statements } = recording(t.pool);
    await checkVersionsInUse(db, registry);
    await expectIndexed(statements, ['entities']);

    // Done entities on a version no longer registered hold nothing back; one still active does.
    await t.pool.query(`update entities set machine_version = 7 where entity_id in ('p-1', 'p-2')`);
    await checkVersionsInUse(t.pool, registry);
    await t.pool.query(`update entities set machine_version = 7 where entity_id = 'p-10'`);
    await expect(checkVersionsInUse(t.pool, registry)).rejects.toThrow(
      /machine "plan-b" version 7 is used by 1 entities that are not done/,
    );
    await t.pool.query(`update entities set machine_version = 1 where entity_id in ('p-1', 'p-2', 'p-10')`);
  });

  it('the jobs list reads the newest of each queue, and gives what sorting them all would', async () => {
    // Installs pg-boss and the demo handlers' queues, then stops: its workers would take the
    // pending jobs below and move them on while the two listings are compared.
    const engine = await t.startEngine({
      parts: { ingest: false, dispatch: false, jobs: true, outbox: false },
    });
    await engine.stop({ graceMs: 0 });
    // Runs, undos and their dead letters; some pending, one in a hundred failed. Jobs come
    // in pairs with the same created_on in the same queue, as one transaction's inserts do.
    const queues = [
      ['reserveStock', 'run', ''],
      ['chargePayment', 'run', ''],
      ['shipOrder', 'run', ''],
      ['reserveStock', 'compensate', '.compensate'],
      ['reserveStock', 'run', '.dead'],
      ['chargePayment', 'compensate', '.compensate.dead'],
    ];
    await t.pool.query(
      `insert into pgboss.job (name, data, state, created_on, started_on, completed_on)
       select 'statehouse.' || q.handler || q.suffix,
              jsonb_build_object('machine', case when g % 7 = 0 then 'account' else 'order' end,
                                 'entityId', 'j-' || (g % 5000), 'handler', q.handler, 'kind', q.kind),
              case when q.suffix like '%.dead' or g % 50 = 1 then 'created'
                   when g % 100 = 0 then 'failed' else 'completed' end::pgboss.job_state,
              now() - make_interval(secs => g / 2), now(), now()
       from generate_series(1, $2::int) g
       cross join lateral (
         select ($1::text[])[1 + (g / 2) % 6][1] as handler, ($1::text[])[1 + (g / 2) % 6][2] as kind,
                ($1::text[])[1 + (g / 2) % 6][3] as suffix) q`,
      [queues, ENTITIES],
    );
    await t.pool.query('analyze pgboss.job');
    type Filter = {
      entityId?: string;
      machine?: string;
      handler?: string;
      kind?: 'run' | 'compensate';
      state?: 'failed' | 'dead' | 'pending';
      limit: number;
    };
    // The listing as it was: one query over all of statehouse's jobs, sorted.
    const reference = async (filter: Filter) =>
      (
        await t.pool.query<{ id: string }>(
          `select id::text from pgboss.job job
           where name like 'statehouse.%'
             and ($1::text is null or data->>'machine' = $1)
             and ($2::text is null or data->>'entityId' = $2)
             and ($3::text is null or data->>'handler' = $3)
             and ($6::text is null or data->>'kind' = $6)
             and case $4::text
                   when 'dead' then name like '%.dead' and state = 'created'
                   when 'pending' then name not like '%.dead' and state in ('created', 'retry')
                   when '' then true
                   else name not like '%.dead' and state::text = $4 end
           order by job.created_on desc, job.id desc limit $5`,
          [
            filter.machine ?? null,
            filter.entityId ?? null,
            filter.handler ?? null,
            filter.state ?? '',
            filter.limit,
            filter.kind ?? null,
          ],
        )
      ).rows.map((row) => row.id);
    const { db, statements } = recording(t.pool);
    const operations = await JobOperations.open({
      databaseUrl: t.databaseUrl,
      pool: db,
      bossSchema: 'pgboss',
      notifyChannel: dispatchChannel(t.config.database.schema),
      wakeChannel: jobsChannel(t.config.database.schema),
    });
    const client = await t.pool.connect();
    try {
      const filters: Array<Filter & { bounded: boolean }> = [
        // Bounded: the newest jobs of each queue that can match, a few pages each.
        { limit: 100, bounded: true },
        { handler: 'shipOrder', limit: 31, bounded: true },
        { kind: 'compensate', limit: 30, bounded: true },
        { state: 'dead', limit: 30, bounded: true },
        { handler: 'reserveStock', kind: 'run', limit: 30, bounded: true },
        { handler: 'chargePayment', kind: 'compensate', state: 'dead', limit: 7, bounded: true },
        // Read among all of statehouse's jobs: states other than dead, a job's entity or machine.
        { state: 'pending', limit: 30, bounded: false },
        { state: 'failed', limit: 20, bounded: false },
        { entityId: 'j-42', limit: 5, bounded: false },
        { machine: 'account', kind: 'compensate', limit: 15, bounded: false },
      ];
      for (const { bounded, ...filter } of filters) {
        statements.length = 0;
        const listed = await operations.list(filter);
        expect(listed.map((job) => job.id)).toEqual(await reference(filter));
        if (!bounded) continue;
        await expectIndexed(statements, ['job', 'job_common']);
        // A bounded listing reads a few pages of each queue, not the table.
        expect(await pagesRead(client, statements[0]!)).toBeLessThan(300);
      }
      // A dot would name another queue: refused, not read as one.
      await expect(operations.list({ handler: 'shipOrder.dead' })).rejects.toThrow(
        '"shipOrder.dead" is not a handler name',
      );
    } finally {
      client.release();
      await operations.close();
    }
  });

  it('the outbox relay’s pruning reads at most a batch of rows, not the whole table, when nothing is due', async () => {
    await t.pool.query(
      `insert into outbox (machine, entity_id, subject, type, data, sent_at)
       select 'order', 'p-' || g, 'orders.p-' || g || '.shipped', 'order.shipped', '{}', now() - make_interval(secs => $1 - g)
       from generate_series(1, $1::int) g`,
      [ENTITIES],
    );
    await t.pool.query('analyze outbox');
    const { db, statements } = recording(t.pool);
    const relay = new OutboxRelay({
      pool: db,
      databaseUrl: t.databaseUrl,
      schema: t.config.database.schema,
      js: jetstream(t.nats),
      subjectPrefix: '',
      notifyChannel: 'unused',
      keepSentHours: 24,
      log: createLogger('silent'),
    });
    // Every row sent within the last day: none is due.
    expect(await relay.pruneSent()).toBe(0);
    await expectIndexed(statements, ['outbox']);
    // The oldest 12,000 sent two days ago, apart from ten that were held back (their entity's
    // earlier event could not be published) and went out just now: the others go, a batch at
    // a time, and those ten stay.
    await t.pool.query(
      `update outbox set sent_at = case when entity_id in (${Array.from({ length: 10 }, (_, i) => `'p-${100 + i}'`).join(', ')})
                                        then now() else now() - interval '2 days' end
       where id <= (select min(id) from outbox) + 11999`,
    );
    statements.length = 0;
    expect(await relay.pruneSent()).toBe(11_990);
    await expectIndexed(statements, ['outbox']);
    const { rows } = await t.pool.query<{ n: number }>(
      `select count(*)::int as n from outbox where entity_id like 'p-10_'`,
    );
    expect(rows[0]!.n).toBe(10);
  });

  it('says at start which machines no workflow here takes have entities waiting, reading only the queue', async () => {
    const logged: Array<{ msg: string }> = [];
    const log = pino({ level: 'warn' }, { write: (line: string) => void logged.push(JSON.parse(line)) });
    // Some of the registered machines' entities waiting too, ahead in the queue.
    await t.pool.query(
      `update entities set last_version = 4, pending_since = now() - interval '1 minute' where entity_id in ('p-3', 'p-6')`,
    );
    const { db, statements } = recording(t.pool);
    expect(await warnOfUnregisteredBacklog(db, registry, log)).toEqual([]);
    expect(logged).toEqual([]);
    await expectIndexed(statements, ['entities']);

    await t.pool.query(
      `insert into entities (machine, entity_id, last_version, pending_since)
       values ('retired', 'r-1', 2, now()), ('retired', 'r-2', 1, now()), ('older', 'o-1', 1, now())`,
    );
    expect(await warnOfUnregisteredBacklog(t.pool, registry, log)).toEqual(['older', 'retired']);
    expect(logged).toHaveLength(1);
    expect(logged[0]!.msg).toContain(
      'entities of "older", "retired" have events waiting, and this engine registers no workflow of that name',
    );
    await t.pool.query(`delete from entities where machine in ('retired', 'older')`);
    await t.pool.query(
      `update entities set last_version = 3, pending_since = null where entity_id in ('p-3', 'p-6')`,
    );
  });

  it('the job runner’s start-up look for sagas stopped at a missing compensation reads only failed steps', async () => {
    const client = await t.pool.connect();
    try {
      const { db, statements } = recording(client);
      const resumed = await resumeStepsMissingHandlers(db, ['reserveStock'], {
        notifyChannel: 'unused',
        canCompensate: () => true,
        enqueueCompensation: async () => {},
      });
      // The failed steps here failed for another reason than a missing handler.
      expect(resumed).toBe(0);
      await expectIndexed(statements, ['saga_steps']);
    } finally {
      client.release();
    }
  });
});
