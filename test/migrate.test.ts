import { afterAll, beforeAll, describe, expect, it } from 'vitest';
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

  it('refuse a database migrated by a newer statehouse', async () => {
    await t.pool.query("insert into statehouse.migrations (version, name) values (999, 'from_the_future')");
    await expect(migrate(t.pool, 'statehouse')).rejects.toMatchObject({ code: 'SCHEMA_TOO_NEW' });
  });
});
