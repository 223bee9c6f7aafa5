import type pg from 'pg';

export function orderPlaced(overrides: Record<string, unknown> = {}) {
  return {
    type: 'order.placed',
    data: {
      customerId: 'c-7',
      items: [{ sku: 'book-1', quantity: 2 }],
      amountCents: 2599,
      paymentMethod: 'visa',
      address: '1 Main St',
      ...overrides,
    },
  };
}

export interface EntityRow {
  status: string;
  state: unknown;
  last_version: number;
  applied_version: number;
  snapshot: { context: Record<string, unknown> } | null;
  error: Record<string, unknown> | null;
}

export async function entityRow(
  pool: pg.Pool,
  entityId: string,
  machine = 'order',
): Promise<EntityRow | undefined> {
  const { rows } = await pool.query<EntityRow>(
    'select status, state, last_version, applied_version, snapshot, error from entities where machine = $1 and entity_id = $2',
    [machine, entityId],
  );
  return rows[0];
}

export async function eventTypes(pool: pg.Pool, entityId: string, machine = 'order'): Promise<string[]> {
  const { rows } = await pool.query<{ type: string }>(
    'select type from events where machine = $1 and entity_id = $2 order by version',
    [machine, entityId],
  );
  return rows.map((r) => r.type);
}
