import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { GROWN_BYTES } from '../src/db/planned.ts';
import { appendEvents, encodeEvents } from '../src/store/index.ts';
import { createTestContext, type TestContext } from './helpers/context.ts';

let next = 0;
const events = (count: number) =>
  Array.from({ length: count }, () => {
    next++;
    return {
      machine: 'ledger',
      entityId: `p-${next % 500}`,
      type: 'ledger.entry',
      data: { n: next, memo: 'x'.repeat(200) },
      messageId: `planned-${next}`,
      source: 'operator' as const,
    };
  });

async function preparedStatements(client: pg.ClientBase): Promise<string[]> {
  const { rows } = await client.query<{ name: string }>('select name from pg_prepared_statements');
  return rows.map((row) => row.name);
}

describe('prepared statements of a growing store', () => {
  let t: TestContext;
  beforeAll(async () => {
    t = await createTestContext();
  });
  afterAll(() => t.cleanup());

  it('are prepared again once the table has grown, so the cached plan probes the index instead of scanning the history', async () => {
    const client = await t.pool.connect();
    const eventsSize = async () =>
      (await client.query<{ bytes: number }>("select pg_relation_size('events')::int as bytes")).rows[0]!
        .bytes;
    try {
      // Postgres would otherwise try five custom plans before caching one; this caches the
      // first, as a connection that runs long ends up doing.
      await client.query('set plan_cache_mode = force_generic_plan');
      await appendEvents(client, events(1));
      expect(await preparedStatements(client)).toEqual(['statehouse.append-events~events']);

      // Just past the size from which a cached plan must probe the index.
      while ((await eventsSize()) <= GROWN_BYTES) await appendEvents(client, events(100));
      expect(await eventsSize()).toBeLessThan(GROWN_BYTES * 1.25);
      for (let i = 0; i < 50; i++) await appendEvents(client, events(1));
      expect(await preparedStatements(client)).toContain('statehouse.append-events');

      const encoded = encodeEvents(events(1));
      const { rows } = await client.query<{ 'QUERY PLAN': string }>(
        `explain execute "statehouse.append-events"(${client.escapeLiteral(encoded)}, null)`,
      );
      const plan = rows.map((row) => row['QUERY PLAN']).join('\n');
      expect(plan).toContain('events_message_id_key');
      expect(plan).not.toMatch(/Seq Scan on events\b/);
    } finally {
      // Its plan_cache_mode goes with it.
      client.release(true);
    }
  });
});
