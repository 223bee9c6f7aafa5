import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ENTITY_STATUSES } from '../src/actors/index.ts';
import { createPool, migrate, readMigrations } from '../src/db/index.ts';
import { createTestContext, type TestContext } from './helpers/context.ts';

describe('migrations', () => {
  let t: TestContext;
  beforeAll(async () => {
    t = await createTestContext();
  });
  afterAll(() => t.cleanup());

  it('are numbered from 1 without gaps', () => {
    const migrations = readMigrations();
    expect(migrations.map((m) => m.version)).toEqual(migrations.map((_, i) => i + 1));
  });

  it('allow exactly the entity statuses the engine knows', async () => {
    // The start-up version check and the listings name the statuses (LIVE_STATUSES,
    // ENTITY_STATUSES): one added to the table and not there would escape both.
    const { rows } = await t.pool.query<{ def: string }>(
      `select pg_get_constraintdef(oid) as def from pg_constraint
        where conrelid = 'entities'::regclass and contype = 'c' and pg_get_constraintdef(oid) like '%status%'`,
    );
    expect(rows).toHaveLength(1);
    const allowed = [...rows[0]!.def.matchAll(/'([^']+)'::text/g)].map((m) => m[1]);
    expect(allowed.sort()).toEqual([...ENTITY_STATUSES].sort());
  });

  it('apply once when several processes start at the same time', async () => {
    const pools = [0, 1, 2, 3].map(() => createPool({ url: t.databaseUrl, schema: 'fresh_schema', max: 2 }));
    try {
      const results = await Promise.all(pools.map((pool) => migrate(pool, 'fresh_schema')));
      const applied = results.map((r) => r.applied.length).sort();
      expect(applied).toEqual([0, 0, 0, readMigrations().length]);
      const { rows } = await t.pool.query('select version from fresh_schema.migrations order by version');
      expect(rows.map((r) => r.version)).toEqual(readMigrations().map((m) => m.version));
    } finally {
      await Promise.all(pools.map((p) => p.end()));
    }
  });

  it('0004 upgrades a schema at 0003: only entities with unapplied events stay queued', async () => {
    const schema = 'upgrade_0004';
    const pool = createPool({ url: t.databaseUrl, schema, max: 2 });
    try {
      await migrate(pool, schema, readMigrations().slice(0, 3));
      // resumed: pending_since set by an operator's resume with nothing left to apply.
      await pool.query(
        `insert into entities (machine, entity_id, last_version, applied_version, pending_since) values
           ('m', 'resumed', 1, 1, now()), ('m', 'pending', 2, 0, now()), ('m', 'idle', 2, 2, null)`,
      );
      await migrate(pool, schema);
      const { rows } = await pool.query<{ entity_id: string; queued: boolean }>(
        'select entity_id, pending_since is not null as queued from entities order by entity_id',
      );
      expect(rows).toEqual([
        { entity_id: 'idle', queued: false },
        { entity_id: 'pending', queued: true },
        { entity_id: 'resumed', queued: false },
      ]);
      const indexes = await pool.query<{ indexname: string }>(
        "select indexname from pg_indexes where schemaname = $1 and tablename = 'entities' and indexname like 'entities_pending%'",
        [schema],
      );
      expect(indexes.rows.map((r) => r.indexname)).toEqual(['entities_pending_since']);
    } finally {
      await pool.end();
    }
  });

  it('0006 upgrades a schema at 0005: saga steps learn the version that planned them from their key', async () => {
    const schema = 'upgrade_0006';
    const pool = createPool({ url: t.databaseUrl, schema, max: 2 });
    try {
      await migrate(pool, schema, readMigrations().slice(0, 5));
      await pool.query(
        `insert into saga_steps (step_key, machine, entity_id, handler, input, result) values
           ('trip:t:1:4:0', 'trip', 't:1', 'bookFlight', 'null', 'null'),
           ('trip:t-2:12:1', 'trip', 't-2', 'bookHotel', 'null', 'null'),
           ('hand-made', 'trip', 't-3', 'bookCar', 'null', 'null')`,
      );
      await migrate(pool, schema);
      const { rows } = await pool.query<{ step_key: string; planned_version: number | null }>(
        'select step_key, planned_version from saga_steps order by step_key',
      );
      expect(rows).toEqual([
        { step_key: 'hand-made', planned_version: null },
        { step_key: 'trip:t-2:12:1', planned_version: 12 },
        { step_key: 'trip:t:1:4:0', planned_version: 4 },
      ]);
    } finally {
      await pool.end();
    }
  });

  it('refuse a database migrated by a newer statehouse', async () => {
    await t.pool.query("insert into statehouse.migrations (version, name) values (999, 'from_the_future')");
    await expect(migrate(t.pool, 'statehouse')).rejects.toMatchObject({ code: 'SCHEMA_TOO_NEW' });
  });
});
