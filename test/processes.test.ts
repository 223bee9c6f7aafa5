import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createTestContext, type TestContext, waitFor } from './helpers/context.ts';
import { entityRow, eventTypes, orderPlaced } from './helpers/orders.ts';
import { type EngineProcess, spawnEngine } from './helpers/processes.ts';

const ENTITIES = 100;
const ROUNDS = 10;

/** Publishes ROUNDS entries to each of ENTITIES ledgers, interleaved; entity e gets n = 0, 1, 2… in order. */
async function publishLedgers(t: TestContext, rounds = ROUNDS, onRound?: (round: number) => Promise<void>) {
  for (let n = 0; n < rounds; n++) {
    await Promise.all(
      Array.from({ length: ENTITIES }, (_, e) =>
        t.publish(
          t.subject(`ledger.e-${e}.entry`),
          { type: 'ledger.entry', data: { n } },
          { id: `e-${e}-${n}` },
        ),
      ),
    );
    await onRound?.(n);
  }
}

async function ledgers(t: TestContext): Promise<Map<string, { entries: number[]; applied: number }>> {
  const { rows } = await t.pool.query<{
    entity_id: string;
    entries: number[] | null;
    applied_version: number;
  }>(
    "select entity_id, snapshot->'context'->'entries' as entries, applied_version from entities where machine = 'ledger'",
  );
  return new Map(rows.map((r) => [r.entity_id, { entries: r.entries ?? [], applied: r.applied_version }]));
}

async function allApplied(t: TestContext, perEntity: number) {
  const { rows } = await t.pool.query<{ done: number }>(
    "select count(*)::int as done from entities where machine = 'ledger' and applied_version = $1",
    [perEntity],
  );
  return rows[0]!.done === ENTITIES;
}

/** The OS pid of the process holding the ingest lock, from its connection's application name. */
async function ingestLeader(t: TestContext): Promise<number> {
  return waitFor('an ingest leader', async () => {
    const { rows } = await t.pool.query<{ application_name: string }>(
      `select a.application_name from pg_locks l join pg_stat_activity a on a.pid = l.pid
       where l.locktype = 'advisory' and l.granted and a.datname = current_database()
         and a.application_name like 'statehouse-ingest:%'`,
    );
    return rows[0] ? Number(rows[0].application_name.split(':')[1]) : undefined;
  });
}

describe('several engine processes', () => {
  let t: TestContext;
  let engines: EngineProcess[] = [];
  beforeEach(async () => {
    t = await createTestContext();
  });
  afterEach(async () => {
    await Promise.all(engines.map((e) => e.stop()));
    engines = [];
    await t.cleanup();
  });

  it('invariant per-entity order: three processes apply every entity’s events once, in publish order', async () => {
    engines = await Promise.all([spawnEngine(t), spawnEngine(t), spawnEngine(t)]);
    await publishLedgers(t);
    await waitFor('every ledger to apply all its events', () => allApplied(t, ROUNDS), 60_000);
    const expected = Array.from({ length: ROUNDS }, (_, n) => n);
    for (const [id, ledger] of await ledgers(t)) expect(ledger.entries, id).toEqual(expected);
    // The store's versions follow JetStream's order too.
    const { rows } = await t.pool.query<{ bad: number }>(
      `select count(*)::int as bad from (
         select nats_seq < lag(nats_seq) over (partition by entity_id order by version) as out_of_order
         from events where machine = 'ledger') x where out_of_order`,
    );
    expect(rows[0]!.bad).toBe(0);
  });

  it('invariant stateless processes: kill -9 of an engine mid-flow loses nothing and applies each event once', async () => {
    // A job the killed process held expires timeoutSeconds (30 s for the demo handlers) + 10 s
    // after it started; the engines look for expired jobs every second.
    const env = { STATEHOUSE_JOBS_SUPERVISE_SECONDS: '1' };
    engines = await Promise.all([spawnEngine(t, env), spawnEngine(t, env)]);
    for (let i = 0; i < 20; i++)
      await t.publish(t.subject(`orders.k-${i}.placed`), orderPlaced(), { id: `k-${i}` });
    await publishLedgers(t, ROUNDS, async (round) => {
      if (round === 3) {
        // Kill the process that leads ingest (it also dispatches and runs jobs), then replace it.
        const leader = await ingestLeader(t);
        const index = engines.findIndex((e) => e.child.pid === leader);
        expect(index).toBeGreaterThanOrEqual(0);
        await engines[index]!.kill9();
        engines[index] = await spawnEngine(t, env);
      }
    });
    await waitFor('every ledger to apply all its events', () => allApplied(t, ROUNDS), 90_000);
    const expected = Array.from({ length: ROUNDS }, (_, n) => n);
    for (const [id, ledger] of await ledgers(t)) expect(ledger.entries, id).toEqual(expected);
    for (let i = 0; i < 20; i++) {
      await waitFor(
        `order k-${i} shipped`,
        async () => (await entityRow(t.pool, `k-${i}`))?.state === 'shipped',
        60_000,
      );
      // A job that ran twice across the crash still adds its outcome once.
      expect(await eventTypes(t.pool, `k-${i}`)).toEqual([
        'order.placed',
        'reserveStock.done',
        'chargePayment.done',
        'shipOrder.done',
      ]);
    }
  }, 150_000);

  it('an engine stopped under load exits cleanly, and the next one finishes its work', async () => {
    const first = await spawnEngine(t);
    engines = [first];
    await Promise.all(
      Array.from({ length: 200 }, (_, i) =>
        t.publish(t.subject(`orders.g-${i}.placed`), orderPlaced(), { id: `g-${i}` }),
      ),
    );
    await new Promise((r) => setTimeout(r, 300));
    // SIGTERM mid-flow: messages in hand, transactions open, jobs running.
    await first.stop();
    expect(first.child.exitCode).toBe(0);
    engines = [await spawnEngine(t)];
    await waitFor(
      'every order to finish',
      async () => {
        const { rows } = await t.pool.query<{ n: number }>(
          "select count(*)::int as n from entities where machine = 'order' and status = 'done'",
        );
        return rows[0]!.n === 200;
      },
      90_000,
    );
    const { rows } = await t.pool.query<{ n: number }>(
      "select count(*)::int as n from events where machine = 'order' group by entity_id having count(*) <> 4",
    );
    expect(rows).toEqual([]);
  });
});
