import { AckPolicy, DeliverPolicy, jetstream, jetstreamManager } from '@nats-io/jetstream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { withTransaction } from '../src/db/index.ts';
import { ensureStream } from '../src/ingest/index.ts';
import { OutboxRelay, writeOutbox } from '../src/outbox/index.ts';
import { createLogger } from '../src/shared/logger.ts';
import { createTestContext, type TestContext, waitFor } from './helpers/context.ts';

// The relay on its own, against this file's database and an emit stream of its own.
describe('outbox relay', () => {
  let t: TestContext;
  const channel = () => `${t.config.database.schema}.outbox-test`;
  const relays: OutboxRelay[] = [];
  const relay = (pollIntervalMs: number) => {
    const r = new OutboxRelay({
      pool: t.pool,
      databaseUrl: t.databaseUrl,
      schema: t.config.database.schema,
      js: jetstream(t.nats),
      subjectPrefix: t.config.nats.subjectPrefix,
      notifyChannel: channel(),
      pollIntervalMs,
      keepSentHours: 24,
      log: createLogger('silent'),
    });
    relays.push(r);
    return r;
  };
  const emitted = (entity: string, n: number, subject = `out.${entity}.${n}`) => ({
    machine: 'm',
    entityId: entity,
    subject,
    type: 'm.happened',
    data: { n },
  });
  /** Everything on the emit stream so far, per entity, in stream order, with the message ids. */
  const published = async () => {
    const jsm = await jetstreamManager(t.nats);
    const name = `read-${Math.random().toString(36).slice(2, 8)}`;
    await jsm.consumers.add(t.config.nats.emitStream, {
      name,
      ack_policy: AckPolicy.None,
      deliver_policy: DeliverPolicy.All,
    });
    const consumer = await jetstream(t.nats).consumers.get(t.config.nats.emitStream, name);
    const info = await consumer.info();
    const byEntity = new Map<string, number[]>();
    const ids: string[] = [];
    let left = info.num_pending;
    while (left > 0) {
      const batch = await consumer.fetch({ max_messages: Math.min(left, 500), expires: 2000 });
      for await (const msg of batch) {
        const entity = msg.subject.split('.')[2]!;
        byEntity.set(entity, [...(byEntity.get(entity) ?? []), msg.json<{ data: { n: number } }>().data.n]);
        ids.push(msg.headers?.get('Nats-Msg-Id') ?? '');
        left--;
      }
    }
    await jsm.consumers.delete(t.config.nats.emitStream, name);
    return { byEntity, ids };
  };

  /** The relay listens (so a NOTIFY from now on reaches it) and its first round is over. */
  const listening = async () => {
    await waitFor('the relay to LISTEN', async () => {
      const { rows } = await t.pool.query<{ n: number }>(
        `select count(*)::int as n from pg_stat_activity
         where datname = current_database() and application_name = 'statehouse-listen' and query ilike 'listen%'`,
      );
      return rows[0]!.n > 0;
    });
    await new Promise((r) => setTimeout(r, 200));
  };

  beforeAll(async () => {
    t = await createTestContext();
    const jsm = await jetstreamManager(t.nats);
    await ensureStream(jsm, { stream: t.config.nats.emitStream, subjects: [t.subject('out.>')] });
  });

  afterAll(async () => {
    await Promise.all(relays.map((r) => r.stop()));
    await t.cleanup();
  });

  it('publishes each entity’s events once, in the order they were written, woken by NOTIFY', async () => {
    // A poll interval far beyond the test: only the NOTIFY of each write can wake it.
    relay(600_000).start();
    await listening();
    for (let n = 0; n < 20; n++) {
      await withTransaction(t.pool, (client) =>
        writeOutbox(
          client,
          Array.from({ length: 10 }, (_, e) => emitted(`e${e}`, n)),
          channel(),
        ),
      );
    }
    await waitFor('200 published', async () => (await published()).ids.length === 200);
    const { byEntity, ids } = await published();
    for (let e = 0; e < 10; e++) {
      expect(byEntity.get(`e${e}`)).toEqual(Array.from({ length: 20 }, (_, n) => n));
    }
    expect(new Set(ids).size).toBe(200);
    expect(ids.every((id) => id.startsWith('statehouse-outbox:'))).toBe(true);
    await Promise.all(relays.splice(0).map((r) => r.stop()));
  });

  it('holds back an entity’s later events while an earlier one cannot be published', async () => {
    await t.pool.query('update outbox set sent_at = coalesce(sent_at, now())');
    await withTransaction(t.pool, (client) =>
      writeOutbox(
        client,
        // No stream takes "held.>" yet: the first publish fails.
        [emitted('blocked', 0, 'held.blocked.0'), emitted('blocked', 1), emitted('free', 0)],
        channel(),
      ),
    );
    const r = relay(600_000);
    await expect(r.relayOnce()).rejects.toThrow('1 emitted event(s) could not be published');
    let now = await published();
    expect(now.byEntity.get('free')).toEqual([0]);
    expect(now.byEntity.get('blocked')).toBeUndefined();
    const { rows } = await t.pool.query<{ subject: string; attempts: number; last_error: string | null }>(
      "select subject, attempts, last_error from outbox where entity_id = 'blocked' order by id",
    );
    expect(rows.map((row) => [row.subject, row.attempts, row.last_error !== null])).toEqual([
      ['held.blocked.0', 1, true],
      ['out.blocked.1', 0, false],
    ]);

    // Once a stream takes the subject, both go out, in their order.
    const jsm = await jetstreamManager(t.nats);
    await ensureStream(jsm, { stream: t.config.nats.emitStream, subjects: [t.subject('held.>')] });
    expect(await r.relayOnce()).toBe(2);
    now = await published();
    expect(now.byEntity.get('blocked')).toEqual([0, 1]);
  });

  it('finds rows written without a NOTIFY by polling', async () => {
    relay(1500).start();
    await listening();
    // Written after the relay's first round, with no NOTIFY: only its next poll can find it.
    await t.pool.query(
      `insert into outbox (machine, entity_id, subject, type, data, headers)
       values ('m', 'polled', 'out.polled.0', 'm.happened', '{"n": 0}', '{}')`,
    );
    await new Promise((r) => setTimeout(r, 300));
    expect((await published()).byEntity.get('polled')).toBeUndefined();
    await waitFor(
      'the polled row published',
      async () => (await published()).byEntity.get('polled')?.[0] === 0,
    );
    const { rows } = await t.pool.query<{ n: number }>(
      'select count(*)::int as n from outbox where sent_at is null',
    );
    expect(rows[0]?.n).toBe(0);
  });

  it('deletes rows sent longer ago than keepSentHours, never one that is not sent yet', async () => {
    await Promise.all(relays.splice(0).map((r) => r.stop()));
    await withTransaction(t.pool, (client) =>
      writeOutbox(
        client,
        [0, 1, 2].map((n) => emitted('kept', n)),
        channel(),
      ),
    );
    expect(await relay(600_000).relayOnce()).toBe(3);
    // Two of them sent a day and a bit ago; one emitted long ago that no stream takes
    // (relaying it fails each round).
    await t.pool.query(
      `update outbox set sent_at = now() - interval '25 hours' where entity_id = 'kept' and data->>'n' in ('0', '1')`,
    );
    await t.pool.query(
      `insert into outbox (machine, entity_id, subject, type, data, created_at)
       values ('m', 'kept', 'nowhere.kept.9', 'm.happened', '{"n": 9}', now() - interval '30 days')`,
    );
    const left = async () =>
      (
        await t.pool.query<{ n: number; sent: boolean }>(
          `select (data->>'n')::int as n, sent_at is not null as sent from outbox where entity_id = 'kept' order by id`,
        )
      ).rows;

    // The relaying process prunes as it goes (here at its first round).
    relay(600_000).start();
    await waitFor('the rows past their keep time deleted', async () => (await left()).length === 2);
    expect(await left()).toEqual([
      { n: 2, sent: true },
      { n: 9, sent: false },
    ]);
  });

  it('prunes page after page in one go, not a page a minute, between publishing', async () => {
    await Promise.all(relays.splice(0).map((r) => r.stop()));
    // Nothing failing to publish (a failing round would be retried soon anyway, and hide
    // whether the relay goes on by itself); 12,000 rows sent two days ago behind the earlier
    // tests' rows, which are recent: the first page of 5,000 is not all due.
    await t.pool.query(`delete from outbox where sent_at is null`);
    await t.pool.query(
      `insert into outbox (machine, entity_id, subject, type, data, sent_at)
       select 'm', 'bulk', 'out.bulk.' || g, 'm.happened', '{}', now() - interval '2 days'
       from generate_series(1, 12000) g`,
    );
    const bulk = async () =>
      (await t.pool.query<{ n: number }>(`select count(*)::int as n from outbox where entity_id = 'bulk'`))
        .rows[0]!.n;
    // No NOTIFY comes and the poll is ten minutes away: only the relay going on can do it.
    relay(600_000).start();
    await waitFor('every page pruned', async () => (await bulk()) === 0, 10_000);
    const { rows } = await t.pool.query<{ n: number }>(
      `select count(*)::int as n from outbox where entity_id like 'e%' and sent_at is not null`,
    );
    expect(rows[0]!.n).toBe(200);
  });
});
