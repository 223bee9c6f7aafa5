import { jetstreamManager } from '@nats-io/jetstream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { workflows as demoWorkflows } from '../machines/index.ts';
import { dispatchChannel } from '../src/db/index.ts';
import {
  dropQuarantined,
  listQuarantine,
  type RedriveOutcome,
  redriveAllHeld,
  redriveQuarantined,
} from '../src/ingest/index.ts';
import { WorkflowRegistry } from '../src/workflows/index.ts';
import { ledgerWorkflow } from './fixtures/ledger-app.ts';
import { createTestContext, type TestContext, waitFor } from './helpers/context.ts';
import { entityRow } from './helpers/orders.ts';

describe('quarantine', () => {
  let t: TestContext;
  beforeAll(async () => {
    t = await createTestContext();
  });
  afterAll(() => t.cleanup());

  it('re-drives a message once the workflow that takes it is deployed, and drops what stays bad', async () => {
    // The stream takes ledger subjects, but the first engine has no ledger workflow yet.
    const jsm = await jetstreamManager(t.nats);
    await jsm.streams.add({ name: t.config.nats.stream, subjects: [t.subject('ledger.>')] });
    const before = await t.startEngine({ workflows: demoWorkflows });
    await t.publish(t.subject('ledger.q-1.entry'), { type: 'ledger.entry', data: { n: 7 } });
    await t.publish(t.subject('ledger.q-2.entry'), { type: 'ledger.entry', data: { n: 'seven' } });
    const held = await waitFor('two held messages', async () => {
      const rows = await listQuarantine(t.pool);
      return rows.length === 2 ? rows : undefined;
    });
    expect(held.map((r) => r.reasonCode)).toEqual(['unknown-subject', 'unknown-subject']);
    await before.stop();

    const fixed = [...demoWorkflows, ledgerWorkflow({ guardThrows: false })];
    await t.startEngine({ workflows: fixed });
    const outcomes = await redriveQuarantined(
      t.pool,
      new WorkflowRegistry(fixed, { subjectPrefix: t.config.nats.subjectPrefix }),
      held.map((r) => r.id),
      { maxPayloadBytes: 1 << 20, notifyChannel: dispatchChannel(t.config.database.schema) },
    );
    expect(outcomes).toEqual([
      { id: held[0]!.id, outcome: 'stored', machine: 'ledger', entityId: 'q-1' },
      expect.objectContaining({ id: held[1]!.id, outcome: 'still-invalid', reasonCode: 'schema-violation' }),
    ]);
    await waitFor(
      'q-1 applied',
      async () => (await entityRow(t.pool, 'q-1', 'ledger'))?.applied_version === 1,
    );
    expect((await entityRow(t.pool, 'q-1', 'ledger'))?.snapshot?.context.entries).toEqual([7]);

    // A second re-drive of a stored message does nothing.
    const again = await redriveQuarantined(t.pool, new WorkflowRegistry(fixed), [held[0]!.id], {
      maxPayloadBytes: 1 << 20,
      notifyChannel: 'unused',
    });
    expect(again).toEqual([{ id: held[0]!.id, outcome: 'not-held', status: 'redriven' }]);

    expect(await dropQuarantined(t.pool, [held[1]!.id])).toBe(1);
    expect(await listQuarantine(t.pool)).toEqual([]);
    expect((await listQuarantine(t.pool, { includeResolved: true })).map((r) => r.status)).toEqual([
      'redriven',
      'dropped',
    ]);
  });

  it('re-drives every held message, a page of ids at a time, each once', async () => {
    // Held while no workflow took their subject: four fine, one with bad data.
    const bodies = [1, 2, 3, 'four', 5].map((n) => JSON.stringify({ type: 'ledger.entry', data: { n } }));
    await t.pool.query(
      `insert into quarantine (reason_code, reason, subject, payload, message_id)
       select 'unknown-subject', 'no workflow takes it', $1 || i || '.entry', convert_to(body, 'UTF8'), 'all-held-' || i
       from unnest($2::text[]) with ordinality as b(body, i)`,
      [t.subject('ledger.all-'), bodies],
    );
    const fixed = [...demoWorkflows, ledgerWorkflow({ guardThrows: false })];
    const seen: RedriveOutcome[] = [];
    const counts = await redriveAllHeld(
      t.pool,
      new WorkflowRegistry(fixed, { subjectPrefix: t.config.nats.subjectPrefix }),
      {
        maxPayloadBytes: 1 << 20,
        notifyChannel: dispatchChannel(t.config.database.schema),
        pageSize: 2,
        onOutcome: (outcome) => seen.push(outcome),
      },
    );
    expect(counts).toEqual({ stored: 4, 'still-invalid': 1, 'not-held': 0 });
    // Three pages; the one still invalid, held again, is not looked at a second time.
    expect(seen.map((o) => o.outcome)).toEqual(['stored', 'stored', 'stored', 'still-invalid', 'stored']);
    expect(new Set(seen.map((o) => o.id)).size).toBe(5);
    expect((await listQuarantine(t.pool)).map((row) => row.messageId)).toEqual(['all-held-4']);
  });
});
