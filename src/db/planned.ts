import type pg from 'pg';

/**
 * When the engine's hot statements may be prepared (named), per connection.
 *
 * Postgres plans a prepared statement for its parameters five times, then usually keeps
 * one generic plan for the rest of the connection's life. Made while a table is a few
 * pages, that plan scans the whole table where an index probe belongs, and nothing
 * replaces it until an ANALYZE of the table invalidates it. With autovacuum off, or before
 * its first ANALYZE, every append then read all of `events`: in the e2e benchmark an
 * append of 9 events took 3 ms at 14k events stored, and most of Postgres's time went to
 * it. Planning these statements on every execution is no answer either: their plans take
 * 1-2 ms to make. So a statement runs unnamed (planned for its execution, from the table's
 * current size) until its connection has seen its tables outgrow the size where a full
 * scan could still win, and named (planned once) from then on.
 */

/**
 * Past this size (64 pages), an index probe is the better plan for any batch: the scans
 * seen cached cost 15-40 (10-30 pages), the index probes 30-43. Twice that, for margin;
 * larger would only plan each run for longer, at 1-2 ms a plan.
 */
const GROWN_BYTES = 512 * 1024;
/** A connection whose tables are still small looks again after this many statements. */
const LOOK_EVERY = 50;

interface ConnectionState {
  grown: Set<string>;
  sinceLook: number;
}

const connections = new WeakMap<pg.ClientBase, ConnectionState>();

const SIZES_SQL = `select t as "table", coalesce(pg_relation_size(to_regclass(t)), 0) >= $2 as grown
  from unnest($1::text[]) as t`;

/**
 * The name to prepare statement `name` under on `client`, or undefined to have it planned
 * for this execution: undefined until every table in `tables` (as the connection's
 * search_path finds them) has grown past the size where a cached plan could be a scan.
 */
export async function preparedName(
  client: pg.ClientBase,
  name: string,
  tables: readonly string[],
): Promise<string | undefined> {
  let state = connections.get(client);
  if (!state) {
    state = { grown: new Set(), sinceLook: LOOK_EVERY };
    connections.set(client, state);
  }
  const small = tables.filter((table) => !state.grown.has(table));
  if (small.length === 0) return name;
  if (++state.sinceLook < LOOK_EVERY) return undefined;
  state.sinceLook = 0;
  const { rows } = await client.query<{ table: string; grown: boolean }>(SIZES_SQL, [small, GROWN_BYTES]);
  for (const row of rows) if (row.grown) state.grown.add(row.table);
  return rows.every((row) => row.grown) ? name : undefined;
}
