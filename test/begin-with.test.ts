import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { beginWith, withTransaction } from '../src/db/index.ts';
import { createTestContext, openTransactions, type TestContext } from './helpers/context.ts';

/** Texts a literal must carry unchanged. */
const AWKWARD = [
  "it's",
  'back\\slash',
  "both\\' at once\\\\",
  "E'x'",
  '$$; drop table nothing; $$',
  'new\nline\ttab',
  'emoji 🙂 and ä',
  '',
];

const ECHO = {
  name: 'test.echo',
  text: 'select $1::text as t, $2::text[] as a, $3::jsonb as j, $4::int as n',
  types: ['text', 'text[]', 'jsonb', 'int'],
};

const INSERT = {
  name: 'test.insert',
  text: 'insert into begun_rows values ($1, $2)',
  types: ['int', 'text'],
};

describe('a statement that begins its transaction', () => {
  let t: TestContext;
  beforeAll(async () => {
    t = await createTestContext();
    await t.pool.query('create table begun_rows (id int primary key, note text)');
  });
  afterAll(() => t.cleanup());

  for (const conforming of ['on', 'off']) {
    it(`carry every argument unchanged, standard_conforming_strings ${conforming}`, async () => {
      const client = await t.pool.connect();
      try {
        await client.query(`set standard_conforming_strings = ${conforming}`);
        for (const text of AWKWARD) {
          const json = JSON.stringify({ text, nested: [text, { q: '\'\\"' }] });
          const { rows } = await beginWith<{ t: string; a: string[]; j: unknown; n: number }>(client, ECHO, [
            text,
            [text, 'plain', text],
            json,
            -7,
          ]);
          await client.query('rollback');
          expect(rows).toEqual([{ t: text, a: [text, 'plain', text], j: JSON.parse(json), n: -7 }]);
        }
        const { rows } = await beginWith<{ t: string | null; a: string[] }>(client, ECHO, [
          null,
          [],
          '{}',
          0,
        ]);
        await client.query('rollback');
        expect(rows[0]).toMatchObject({ t: null, a: [] });
      } finally {
        // Destroyed: its setting must not reach the other tests.
        client.release(true);
      }
    });
  }

  it('prepares a statement once per connection', async () => {
    const client = await t.pool.connect();
    const preparedAt = async () => {
      const { rows } = await client.query<{ at: Date }>(
        "select prepare_time as at from pg_prepared_statements where name = 'test.echo'",
      );
      return rows.map((row) => row.at.getTime());
    };
    try {
      await beginWith(client, ECHO, ['x', [], 'null', 0]);
      await client.query('rollback');
      const first = await preparedAt();
      for (let i = 1; i < 3; i++) {
        await beginWith(client, ECHO, ['x', [], 'null', i]);
        await client.query('rollback');
      }
      expect(first).toHaveLength(1);
      expect(await preparedAt()).toEqual(first);
    } finally {
      client.release();
    }
  });

  it('holds what follows it in the same transaction: committed together, or rolled back together', async () => {
    await withTransaction(
      t.pool,
      async (client) => {
        await beginWith(client, INSERT, [1, 'begun']);
        await client.query("insert into begun_rows values (2, 'after it')");
        await client.query('commit');
      },
      { workBegins: true },
    );
    // A duplicate key fails the statement after it: row 3 goes with it.
    await expect(
      withTransaction(
        t.pool,
        async (client) => {
          await beginWith(client, INSERT, [3, 'rolled back']);
          await client.query("insert into begun_rows values (1, 'duplicate')");
          await client.query('commit');
        },
        { workBegins: true, retries: 0 },
      ),
    ).rejects.toMatchObject({ code: '23505' });
    const { rows } = await t.pool.query('select id, note from begun_rows order by id');
    expect(rows).toEqual([
      { id: 1, note: 'begun' },
      { id: 2, note: 'after it' },
    ]);
  });

  it('leaves no transaction open on a connection whose work failed after it began', async () => {
    await expect(
      withTransaction(
        t.pool,
        async (client) => {
          await beginWith(client, ECHO, ['x', [], 'null', 1]);
          throw new Error('the work failed');
        },
        { workBegins: true },
      ),
    ).rejects.toThrow('the work failed');
    // Every idle connection of the pool is outside a transaction.
    expect(await openTransactions(t.databaseUrl)).toBe(0);
  });

  it('fails, and rolls back, a work that began a transaction and returns without committing', async () => {
    await expect(
      withTransaction(t.pool, (client) => beginWith(client, INSERT, [9, 'left open']), {
        workBegins: true,
        retries: 0,
      }),
    ).rejects.toThrow(/returned without committing/);
    const { rows } = await t.pool.query('select count(*)::int as n from begun_rows where id = 9');
    expect(rows[0].n).toBe(0);
  });

  it('runs a statement without parameters', async () => {
    await withTransaction(
      t.pool,
      async (client) => {
        const { rows } = await beginWith<{ one: number }>(
          client,
          { name: 'test.one', text: 'select 1 as one', types: [] },
          [],
        );
        expect(rows).toEqual([{ one: 1 }]);
        await client.query('commit');
      },
      { workBegins: true },
    );
  });

  it('refuses a statement name Postgres would cut short, and a work that begins in autocommit', async () => {
    const client = await t.pool.connect();
    try {
      await expect(
        beginWith(client, { name: `test.${'x'.repeat(60)}`, text: 'select 1', types: [] }, []),
      ).rejects.toThrow(/longer than 63 bytes/);
    } finally {
      client.release();
    }
    await expect(
      withTransaction(t.pool, async () => 1, { workBegins: true, autocommit: true }),
    ).rejects.toThrow(/both begun by its work and autocommit/);
  });

  it('refuses an argument it cannot write exactly, before sending anything', async () => {
    const client = await t.pool.connect();
    try {
      const never = { ...ECHO, name: 'test.never-prepared' };
      await expect(beginWith(client, never, ['x', [], 'null', 1.5])).rejects.toThrow(/not an integer/);
      expect(client.getTransactionStatus()).toBe('I');
      const { rows } = await client.query(
        "select count(*)::int as n from pg_prepared_statements where name = 'test.never-prepared'",
      );
      expect(rows[0].n).toBe(0);
    } finally {
      client.release();
    }
  });
});
