import { AckPolicy, DeliverPolicy, jetstreamManager } from '@nats-io/jetstream';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createTestContext, type TestContext, waitFor } from './helpers/context.ts';
import { entityRow, eventTypes, orderPlaced } from './helpers/orders.ts';

async function storedCount(t: TestContext, messageIdLike = '%'): Promise<number> {
  const { rows } = await t.pool.query<{ n: number }>(
    "select count(*)::int as n from events where source = 'nats' and message_id like $1",
    [messageIdLike],
  );
  return rows[0]!.n;
}

async function quarantined(t: TestContext) {
  const { rows } = await t.pool.query<{
    reason_code: string;
    subject: string;
    reason: string;
    payload: Buffer;
  }>('select reason_code, subject, reason, payload from quarantine order by nats_seq');
  return rows;
}

describe('ingest', () => {
  let t: TestContext;
  beforeEach(async () => {
    t = await createTestContext();
  });
  afterEach(() => t.cleanup());

  it('invariant exactly-once state: a message published twice with one Nats-Msg-Id is stored once', async () => {
    await t.startEngine();
    await t.publish(t.subject('orders.d-1.placed'), orderPlaced(), { id: 'dup-1' });
    await t.publish(t.subject('orders.d-1.placed'), orderPlaced(), { id: 'dup-1' });
    const row = await waitFor('d-1 shipped', async () =>
      (await entityRow(t.pool, 'd-1'))?.state === 'shipped' ? true : undefined,
    );
    expect(row).toBe(true);
    expect(await storedCount(t)).toBe(1);
  });

  it('invariant exactly-once state: repeats within a batch and of stored events are dropped, the rest keep consecutive versions', async () => {
    const ce = (id: string) => ({
      specversion: '1.0',
      id,
      source: 'shop',
      type: 'order.placed',
      data: orderPlaced().data,
    });
    const subject = t.subject('orders.d-3.placed');
    // Published while no engine runs (the first one made the stream), so they are read as one batch.
    await (await t.startEngine({ parts: { dispatch: false, jobs: false } })).stop();
    await t.publish(subject, ce('e-1'));
    await t.publish(subject, orderPlaced(), { id: 'p-1' });
    await t.publish(subject, ce('e-1'));
    await t.publish(subject, orderPlaced(), { id: 'p-2' });
    const versions = async () => {
      const { rows } = await t.pool.query<{ message_id: string; version: number }>(
        "select message_id, version from events where entity_id = 'd-3' order by version",
      );
      return rows.map((r) => `${r.version}:${r.message_id}`);
    };
    await t.startEngine({ parts: { dispatch: false, jobs: false } });
    await waitFor('the first batch stored', async () => (await versions()).length === 3);
    // A repeat of a stored event, with a new one after it.
    await t.publish(subject, ce('e-1'));
    await t.publish(subject, orderPlaced(), { id: 'p-3' });
    await waitFor('p-3 stored', async () => (await versions()).length === 4);
    expect(await versions()).toEqual(['1:ce:shop:e-1', '2:p-1', '3:p-2', '4:p-3']);
    const { rows } = await t.pool.query<{ last_version: number }>(
      "select last_version from entities where entity_id = 'd-3'",
    );
    expect(rows[0]!.last_version).toBe(4);
  });

  it('invariant exactly-once state: the same event id redelivered under new stream sequences is applied once', async () => {
    // JetStream dedupes within its window; CloudEvents ids are deduped by statehouse itself.
    await t.startEngine();
    const ce = {
      specversion: '1.0',
      id: 'evt-77',
      source: 'shop',
      type: 'order.placed',
      data: orderPlaced().data,
    };
    const seqs = [];
    for (let i = 0; i < 3; i++) seqs.push(await t.publish(t.subject('orders.d-2.placed'), ce));
    expect(new Set(seqs).size).toBe(3);
    await waitFor('d-2 shipped', async () => (await entityRow(t.pool, 'd-2'))?.state === 'shipped');
    expect(await eventTypes(t.pool, 'd-2')).toEqual([
      'order.placed',
      'reserveStock.done',
      'chargePayment.done',
      'shipOrder.done',
    ]);
    expect(await storedCount(t, 'ce:shop:evt-77')).toBe(1);
  });

  it('invariant bad input never stops the line: each kind of bad message is quarantined and the next good one goes through', async () => {
    // A stream that also takes subjects no workflow routes (shared with other consumers,
    // or a workflow since removed): such messages reach the engine and must not stop it.
    const jsm = await jetstreamManager(t.nats);
    await jsm.streams.add({ name: t.config.nats.stream, subjects: [t.subject('invoices.>')] });
    await t.startEngine({ config: { nats: { maxPayloadBytes: 2048 } } });
    const s = t.subject;
    await t.publish(s('orders.q-1.placed'), '{"type": "order.placed", "data": ', { raw: true });
    await t.publish(s('invoices.q-2.created'), orderPlaced());
    await t.publish(s('orders.q-3.placed'), { type: 'order.teleported', data: {} });
    await t.publish(s('orders.q-4.placed'), { type: 'order.placed', data: { customerId: 'c' } });
    await t.publish(s('orders.q-5.placed'), orderPlaced({ address: 'x'.repeat(4000) }));
    await t.publish(s('orders.$bad.placed'), orderPlaced());
    await t.publish(s('orders.q-7.placed'), { data: {} });
    // Valid JSON that Postgres cannot store: a NUL, an unpaired surrogate, a NUL in a header.
    await t.publish(s('orders.q-9.placed'), orderPlaced({ address: 'a\u0000b' }));
    await t.publish(s('orders.q-10.placed'), orderPlaced({ address: 'a\ud800b' }));
    await t.publish(s('orders.q-11.placed'), orderPlaced(), { headers: { 'Correlation-Id': 'x\u0000y' } });
    await t.publish(s('orders.q-8.placed'), orderPlaced());

    await waitFor('q-8 shipped', async () => (await entityRow(t.pool, 'q-8'))?.state === 'shipped');
    const held = await quarantined(t);
    expect(held.map((q) => q.reason_code)).toEqual([
      'malformed-json',
      'unknown-subject',
      'unknown-type',
      'schema-violation',
      'oversize',
      'invalid-entity-id',
      'invalid-envelope',
      'malformed-json',
      'malformed-json',
      'invalid-envelope',
    ]);
    expect(held[0]!.payload.toString()).toBe('{"type": "order.placed", "data": ');
    expect(held[7]!.reason).toBe('payload holds a NUL character (\\u0000), which Postgres cannot store');
    expect(held[8]!.reason).toBe(
      'payload holds an unpaired UTF-16 surrogate (\\ud800), which Postgres cannot store',
    );
    expect(held[9]!.reason).toContain('header "Correlation-Id" holds a NUL character');
    expect(held[2]!.reason).toContain('takes no event type "order.teleported"');
    expect(held[3]!.reason).toContain('items');
    // Nothing bad reached the event store.
    const { rows } = await t.pool.query<{ n: number }>(
      'select count(distinct entity_id)::int as n from events',
    );
    expect(rows[0]!.n).toBe(1);
  });

  it('accepts CloudEvents in binary mode with headers carried through', async () => {
    await t.startEngine();
    await t.publish(t.subject('orders.ce-1.placed'), orderPlaced().data, {
      headers: {
        'ce-specversion': '1.0',
        'ce-id': 'b-1',
        'ce-source': 'checkout',
        'ce-type': 'order.placed',
        traceparent: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01',
        'Correlation-Id': 'corr-9',
      },
    });
    await waitFor('ce-1 shipped', async () => (await entityRow(t.pool, 'ce-1'))?.state === 'shipped');
    const { rows } = await t.pool.query<{ metadata: Record<string, unknown>; message_id: string }>(
      "select metadata, message_id from events where entity_id = 'ce-1' and version = 1",
    );
    expect(rows[0]!.message_id).toBe('ce:checkout:b-1');
    expect(rows[0]!.metadata).toMatchObject({
      correlationId: 'corr-9',
      traceparent: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01',
      cloudEvent: { id: 'b-1', source: 'checkout' },
    });
  });

  it('replaces a consumer left with explicit acks by an older version, resuming after the checkpoint', async () => {
    const first = await t.startEngine({ parts: { dispatch: false, jobs: false } });
    await t.publish(t.subject('orders.x-0.placed'), orderPlaced(), { id: 'x-0' });
    await waitFor('x-0 stored', async () => (await storedCount(t, 'x-%')) === 1);
    await first.stop();
    const { stream, consumer } = first.config.nats;
    const jsm = await jetstreamManager(t.nats);
    // What an older statehouse left behind: explicit acks, delivery from the start.
    await jsm.consumers.delete(stream, consumer);
    await jsm.consumers.add(stream, {
      durable_name: consumer,
      ack_policy: AckPolicy.Explicit,
      deliver_policy: DeliverPolicy.All,
    });
    for (let i = 1; i <= 5; i++)
      await t.publish(t.subject(`orders.x-${i}.placed`), orderPlaced(), { id: `x-${i}` });
    await t.startEngine({ parts: { dispatch: false, jobs: false } });
    await waitFor('x-1..x-5 stored', async () => (await storedCount(t, 'x-%')) === 6);
    const info = await jsm.consumers.info(stream, consumer);
    expect(info.config.ack_policy).toBe(AckPolicy.All);
    await waitFor('every message acked', async () => {
      const now = await jsm.consumers.info(stream, consumer);
      return now.num_ack_pending === 0 && now.num_pending === 0;
    });
    expect(await storedCount(t, 'x-%')).toBe(6);
  });

  it('the checkpoint fences the leader: a batch whose checkpoint moved on stores nothing', async () => {
    const engine = await t.startEngine({ parts: { dispatch: false, jobs: false } });
    const stored = async () => {
      const { rows } = await t.pool.query<{ message_id: string }>(
        "select message_id from events where message_id like 'f-%' order by message_id",
      );
      return rows.map((r) => r.message_id);
    };
    await t.publish(t.subject('orders.f-1.placed'), orderPlaced(), { id: 'f-1' });
    await waitFor('f-1 stored', async () => (await stored()).length === 1);
    // Another leader (as far as this one can tell) stored the next message.
    await t.pool.query('update ingest_checkpoints set last_seq = last_seq + 1 where stream = $1', [
      engine.config.nats.stream,
    ]);
    await t.publish(t.subject('orders.f-2.placed'), orderPlaced(), { id: 'f-2' });
    // The fenced batch throws; the engine takes the lead again and resumes after the checkpoint.
    await t.publish(t.subject('orders.f-3.placed'), orderPlaced(), { id: 'f-3' });
    await waitFor('f-3 stored', async () => (await stored()).includes('f-3'), 20_000);
    expect(await stored()).toEqual(['f-1', 'f-3']);
  });

  it('invariant nothing acknowledged is lost: a crash between commit and ack stores the redelivered messages once', async () => {
    let crash = true;
    const seen: number[] = [];
    const engine = await t.startEngine({
      config: { nats: { ackWaitMs: 1000 } },
      parts: { dispatch: false, jobs: false },
      hooks: {
        afterCommit: (batch) => {
          seen.push(...batch.map((m) => m.seq));
          if (crash) {
            crash = false;
            throw new Error('simulated crash after commit, before ack');
          }
        },
      },
    });
    for (let i = 0; i < 5; i++) await t.publish(t.subject(`orders.c-${i}.placed`), orderPlaced());
    const jsm = await jetstreamManager(t.nats);
    await waitFor('every message acked after redelivery', async () => {
      const info = await jsm.consumers.info(engine.config.nats.stream, engine.config.nats.consumer);
      return info.num_ack_pending === 0 && info.num_pending === 0 && seen.length > 5;
    });
    // Some sequence came back after the crash: it was redelivered, and skipped.
    expect(new Set(seen).size).toBeLessThan(seen.length);
    expect(await storedCount(t)).toBe(5);
    const { rows } = await t.pool.query<{ n: number }>('select max(last_version)::int as n from entities');
    expect(rows[0]!.n).toBe(1);
  });

  it('invariant nothing acknowledged is lost: a batch whose quarantine insert fails stores nothing, and is stored whole on the next try', async () => {
    // The first insert into the quarantine fails: the batch's transaction (events, checkpoint,
    // quarantine) must roll back as one, or the bad message would be acked unrecorded. A
    // sequence counts the attempts: unlike a table, it is not rolled back with them.
    await t.pool.query(`
      create sequence quarantine_attempts;
      create function fail_quarantine_once() returns trigger language plpgsql as $$
      begin
        if nextval('quarantine_attempts') = 1 then raise exception 'simulated quarantine failure'; end if;
        return new;
      end $$;
      create trigger fail_once before insert on quarantine for each row execute function fail_quarantine_once();
    `);
    // Published while no engine runs (the first one only sets the stream up), so both land
    // in one batch.
    await (await t.startEngine({ parts: { dispatch: false, jobs: false } })).stop();
    await t.publish(t.subject('orders.qf-1.placed'), orderPlaced());
    const bad = await t.publish(t.subject('orders.qf-2.placed'), '{"type": ', { raw: true });
    await t.startEngine({ parts: { dispatch: false, jobs: false } });
    await waitFor('the batch stored', async () => (await quarantined(t)).length === 1);
    const { rows: attempts } = await t.pool.query<{ n: number }>(
      'select last_value::int as n from quarantine_attempts',
    );
    expect(attempts[0]!.n).toBe(2);
    expect(await storedCount(t)).toBe(1);
    expect((await quarantined(t)).map((q) => q.reason_code)).toEqual(['malformed-json']);
    const { rows } = await t.pool.query<{ last_seq: number }>('select last_seq from ingest_checkpoints');
    expect(rows[0]!.last_seq).toBe(bad);
  });

  it('invariant nothing acknowledged is lost: messages published while no engine runs are all stored once it starts', async () => {
    const first = await t.startEngine({ parts: { dispatch: false, jobs: false } });
    await t.publish(t.subject('orders.r-0.placed'), orderPlaced());
    await waitFor('r-0 stored', async () => (await storedCount(t)) === 1);
    await first.stop();
    for (let i = 1; i <= 20; i++) await t.publish(t.subject(`orders.r-${i}.placed`), orderPlaced());
    await t.startEngine({ parts: { dispatch: false, jobs: false } });
    await waitFor('all stored', async () => (await storedCount(t)) === 21);
  });
});
