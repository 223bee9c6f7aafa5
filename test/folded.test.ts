import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runFolded, withTransaction } from '../src/db/index.ts';
import { createTestContext, type TestContext } from './helpers/context.ts';

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

describe('statements with begin or commit folded in', () => {
  let t: TestContext;
  beforeAll(async () => {
    t = await createTestContext();
    await t.pool.query('create table folded_rows (id int primary key, note text)');
  });
  afterAll(() => t.cleanup());

  for (const conforming of ['on', 'off']) {
    it(`carry every argument unchanged, standard_conforming_strings ${conforming}`, async () => {
      const client = await t.pool.connect();
      try {
        await client.query(`set standard_conforming_strings = ${conforming}`);
        for (const text of AWKWARD) {
          const json = JSON.stringify({ text, nested: [text, { q: '\'\\"' }] });
          const { rows } = await runFolded<{ t: string; a: string[]; j: unknown; n: number }>(
            client,
            ECHO,
            [text, [text, 'plain', text], json, -7],
            'begin',
          );
          await client.query('rollback');
          expect(rows).toEqual([{ t: text, a: [text, 'plain', text], j: JSON.parse(json), n: -7 }]);
        }
        const { rows } = await runFolded<{ t: string | null; a: string[] }>(
          client,
          ECHO,
          [null, [], '{}', 0],
          'begin',
        );
        await client.query('rollback');
        expect(rows[0]).toMatchObject({ t: null, a: [] });
      } finally {
        client.release();
      }
    });
  }

  it('prepares a statement once per connection', async () => {
    const client = await t.pool.connect();
    try {
      for (let i = 0; i < 3; i++) {
        await runFolded(client, ECHO, ['x', [], 'null', i], 'begin');
        await client.query('rollback');
      }
      const { rows } = await client.query(
        "select count(*)::int as n from pg_prepared_statements where name = 'test.echo'",
      );
      expect(rows[0].n).toBe(1);
    } finally {
      client.release();
    }
  });

  it('commits with the statement, and a failed statement commits nothing', async () => {
    const insert = {
      name: 'test.insert',
      text: 'insert into folded_rows values ($1, $2)',
      types: ['int', 'text'],
    };
    await withTransaction(
      t.pool,
      async (client) => {
        await runFolded(client, insert, [1, 'begun'], 'begin');
        await runFolded(client, insert, [2, 'committed'], 'commit');
      },
      { folded: true },
    );
    // A duplicate key fails the statement: its commit is not run, and the transaction with
    // row 3 in it is rolled back.
    await expect(
      withTransaction(
        t.pool,
        async (client) => {
          await runFolded(client, insert, [3, 'rolled back'], 'begin');
          await runFolded(client, insert, [1, 'duplicate'], 'commit');
        },
        { folded: true, retries: 0 },
      ),
    ).rejects.toMatchObject({ code: '23505' });
    const { rows } = await t.pool.query('select id, note from folded_rows order by id');
    expect(rows).toEqual([
      { id: 1, note: 'begun' },
      { id: 2, note: 'committed' },
    ]);
  });

  it('leaves no transaction open on a connection whose work failed after a folded begin', async () => {
    const pool = t.pool;
    await expect(
      withTransaction(
        pool,
        async (client) => {
          await runFolded(client, ECHO, ['x', [], 'null', 1], 'begin');
          throw new Error('the work failed');
        },
        { folded: true },
      ),
    ).rejects.toThrow('the work failed');
    // Every idle connection of the pool is outside a transaction.
    const clients = await Promise.all(Array.from({ length: 3 }, () => pool.connect()));
    try {
      for (const client of clients) {
        const { rows } = await client.query('select now() = statement_timestamp() as fresh');
        expect(rows[0].fresh).toBe(true);
      }
    } finally {
      for (const client of clients) client.release();
    }
  });

  it('refuses an argument it cannot write exactly', async () => {
    const client = await t.pool.connect();
    try {
      await expect(runFolded(client, ECHO, ['x', [], 'null', 1.5], 'begin')).rejects.toThrow(
        /not an integer/,
      );
    } finally {
      client.release();
    }
  });
});
