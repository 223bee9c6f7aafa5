import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { assign, setup } from 'xstate';
import { z } from 'zod';
import { workflows as demoWorkflows } from '../machines/index.ts';
import { defineWorkflow, type SnapshotMigration } from '../src/workflows/index.ts';
import { createTestContext, type TestContext, waitFor } from './helpers/context.ts';

/** Version 1 counts ticks by one; version 2 by ten. */
function counter(version: number, step: number, migrations?: Record<number, SnapshotMigration>) {
  const machine = setup({
    types: { context: {} as { n: number }, events: {} as { type: 'count.tick' } },
  }).createMachine({
    context: { n: 0 },
    on: { 'count.tick': { actions: assign({ n: ({ context }) => context.n + step }) } },
  });
  return defineWorkflow({
    name: 'counter',
    version,
    machine,
    subjects: 'counters.*.>',
    events: { 'count.tick': z.null() },
    ...(migrations ? { migrations } : {}),
  });
}

describe('machine versions', () => {
  let t: TestContext;
  beforeAll(async () => {
    t = await createTestContext();
  });
  afterAll(() => t.cleanup());

  const tick = (id: string) =>
    t.publish(t.subject(`counters.${id}.tick`), { type: 'count.tick', data: null });
  const counterRow = async (id: string) => {
    const { rows } = await t.pool.query<{ version: number; n: number; applied: number }>(
      `select machine_version as version, (snapshot->'context'->>'n')::int as n, applied_version as applied
       from entities where machine = 'counter' and entity_id = $1`,
      [id],
    );
    return rows[0];
  };
  const applied = (id: string, count: number) =>
    waitFor(`${id} to apply ${count}`, async () => {
      const row = await counterRow(id);
      return row?.applied === count ? row : undefined;
    });

  it('keeps an entity on the version it started with while new entities start on the newest', async () => {
    const v1 = await t.startEngine({ workflows: [...demoWorkflows, counter(1, 1)] });
    await tick('old');
    expect(await applied('old', 1)).toMatchObject({ version: 1, n: 1 });
    await v1.stop();

    const both = await t.startEngine({ workflows: [...demoWorkflows, counter(1, 1), counter(2, 10)] });
    await tick('old');
    await tick('new');
    expect(await applied('old', 2)).toMatchObject({ version: 1, n: 2 });
    expect(await applied('new', 1)).toMatchObject({ version: 2, n: 10 });
    await both.stop();
  });

  it('refuses to start without a version that entities in flight still use', async () => {
    await expect(t.startEngine({ workflows: [...demoWorkflows, counter(2, 10)] })).rejects.toThrow(
      /machine "counter" version 1 is used by 1 entities that are not done; keep version 1 registered next to version 2, or give version 2 a snapshot migration/,
    );
  });

  it('moves an entity to the newest version with the snapshot migration it gives', async () => {
    const migrate: SnapshotMigration = (snapshot) => {
      const s = snapshot as { context: { n: number } };
      return { ...s, context: { n: s.context.n * 10 } };
    };
    await t.startEngine({ workflows: [...demoWorkflows, counter(2, 10, { 1: migrate })] });
    await tick('old');
    expect(await applied('old', 3)).toMatchObject({ version: 2, n: 30 });
  });
});
