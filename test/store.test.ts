import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { withTransaction } from '../src/db/index.ts';
import { appendEvents, appendToStream, readGlobalLog, readStream, START_OF_LOG } from '../src/store/index.ts';
import { createTestContext, type TestContext, waitFor } from './helpers/context.ts';

const event = (type: string, messageId: string) => ({
  type,
  data: { at: messageId },
  messageId,
  source: 'operator' as const,
});

describe('event store', () => {
  let t: TestContext;
  beforeAll(async () => {
    t = await createTestContext();
  });
  afterAll(() => t.cleanup());

  it('appends with an expected version and refuses a stale one with a clear conflict', async () => {
    await appendToStream(t.pool, 'account', 'a-1', [event('opened', 'a1-1'), event('credited', 'a1-2')], {
      expectedVersion: 0,
    });
    await expect(
      appendToStream(t.pool, 'account', 'a-1', [event('debited', 'a1-3')], { expectedVersion: 1 }),
    ).rejects.toMatchObject({ code: 'VERSION_CONFLICT', details: { expected: 1, actual: 2 } });
    await appendToStream(t.pool, 'account', 'a-1', [event('debited', 'a1-3')], { expectedVersion: 2 });
    const stream = await readStream(t.pool, 'account', 'a-1');
    expect(stream.map((e) => [e.version, e.type])).toEqual([
      [1, 'opened'],
      [2, 'credited'],
      [3, 'debited'],
    ]);
    expect((await readStream(t.pool, 'account', 'a-1', { afterVersion: 2 })).map((e) => e.type)).toEqual([
      'debited',
    ]);
  });

  it('stores every field of an appended event where it belongs', async () => {
    const given = {
      machine: 'account',
      entityId: 'a-6',
      type: 'credited',
      schemaVersion: 3,
      data: { amountCents: 1200, note: null },
      metadata: { correlationId: 'c-1' },
      messageId: 'f-1',
      source: 'nats' as const,
      subject: 'accounts.a-6.credited',
      natsStream: 'STATEHOUSE',
      natsSeq: 4242,
      publishedAt: new Date('2026-12-05T06:21:02.345Z'),
    };
    await withTransaction(t.pool, (client) => appendEvents(client, [given]), { autocommit: true });
    const [stored] = await readStream(t.pool, 'account', 'a-6');
    expect(stored).toMatchObject({ ...given, version: 1 });
  });

  it('keeps the publish time to the millisecond, and none for an invalid date', async () => {
    const at = new Date('2026-12-05T06:20:01.234Z');
    await withTransaction(
      t.pool,
      (client) =>
        appendEvents(client, [
          { ...event('published', 'p-1'), machine: 'account', entityId: 'a-5', publishedAt: at },
          {
            ...event('published', 'p-2'),
            machine: 'account',
            entityId: 'a-5',
            publishedAt: new Date(Number.NaN),
          },
          { ...event('published', 'p-3'), machine: 'account', entityId: 'a-5' },
        ]),
      { autocommit: true },
    );
    const stream = await readStream(t.pool, 'account', 'a-5');
    expect(stream.map((e) => e.publishedAt?.toISOString() ?? null)).toEqual([at.toISOString(), null, null]);
  });

  it('lets exactly one of two racing writers with the same expected version win', async () => {
    const results = await Promise.allSettled([
      appendToStream(t.pool, 'account', 'a-2', [event('opened', 'a2-x')], { expectedVersion: 0 }),
      appendToStream(t.pool, 'account', 'a-2', [event('opened', 'a2-y')], { expectedVersion: 0 }),
    ]);
    expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
    expect(results.filter((r) => r.status === 'rejected')).toHaveLength(1);
    expect(await readStream(t.pool, 'account', 'a-2')).toHaveLength(1);
  });

  it('the global reader does not skip an event whose transaction commits after a later one', async () => {
    let cursor = (await readAll(t)).next;
    // A transaction takes a position first and commits last.
    const slow = new pg.Client({ connectionString: t.databaseUrl });
    await slow.connect();
    await slow.query('set search_path = statehouse');
    await slow.query('begin');
    await appendEvents(slow, [{ ...event('late', 'late-1'), machine: 'account', entityId: 'a-3' }]);
    await appendToStream(t.pool, 'account', 'a-4', [event('early', 'early-1')]);

    // While the slow transaction is open, the early event is held back too: it may not be
    // returned before anything that could still commit behind it.
    const during = await readGlobalLog(t.pool, cursor);
    expect(during.events.map((e) => e.type)).toEqual([]);

    await slow.query('commit');
    await slow.end();
    // Transaction ids are cluster-wide, so another test's open transaction can hold the
    // reader back a moment longer.
    const after = await waitFor('both events', async () => {
      const page = await readGlobalLog(t.pool, cursor);
      return page.events.length > 0 ? page : undefined;
    });
    expect(after.events.map((e) => e.type)).toEqual(['late', 'early']);
    cursor = after.next;
    expect((await readGlobalLog(t.pool, cursor)).events).toEqual([]);
  });
});

/** Reads the log to its end: every event stored so far, once no transaction holds it back. */
async function readAll(t: TestContext) {
  const { rows } = await t.pool.query<{ n: number }>('select count(*)::int as n from events');
  let seen = 0;
  let page = await readGlobalLog(t.pool, START_OF_LOG);
  return waitFor('the log to be read to its end', async () => {
    seen += page.events.length;
    if (seen >= rows[0]!.n) return page;
    page = await readGlobalLog(t.pool, page.next);
    return undefined;
  });
}
