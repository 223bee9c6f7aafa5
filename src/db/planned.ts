import type pg from 'pg';

/**
 * The name to prepare one of the engine's hot statements under, per connection.
 *
 * Postgres plans a prepared statement for its parameters five times, then usually keeps
 * one generic plan for the rest of the connection's life, until an ANALYZE of a table it
 * reads invalidates it. Made while a table is a few pages, that plan scans the whole table
 * where an index probe belongs. With autovacuum off, or before its first ANALYZE, nothing
 * replaces it, and every append read all of `events`: one connection appending 100-event
 * batches took 26 ms per batch at 20k events stored instead of 4.5. Planning every run
 * instead costs 1-2 ms a plan for these statements.
 *
 * So a statement is prepared under a name that says which of its tables are still small
 * (`statehouse.append-events~events`): a plan made for a small table is fine while it is
 * small, and once the connection sees the table past the size where a scan could still
 * win, the statement is prepared again under its own name and planned for the grown table.
 * Tables only grow, so each statement is prepared at most once per table per connection.
 */

/**
 * Past this size (64 pages), an index probe is the better plan for any batch: the scans
 * seen cached cost 15-40 (10-30 pages), the index probes 30-43. Twice that, for margin.
 */
export const GROWN_BYTES = 512 * 1024;
/**
 * While a table is small, its size is looked at again after this many statements: often
 * enough that a plan made for the small table is not used long past 512 KB (a look is one
 * catalog read; a stale plan scans the table).
 */
const LOOK_EVERY = 10;

interface ConnectionState {
  grown: Set<string>;
  /** Statements whose tables have all grown: prepared under their own name from now on. */
  settled: Set<string>;
  sinceLook: number;
}

const connections = new WeakMap<pg.ClientBase, ConnectionState>();

const SIZES_SQL = `select t as "table", coalesce(pg_relation_size(to_regclass(t)), 0) >= $2 as grown
  from unnest($1::text[]) as t`;

/**
 * `name`, once every table in `tables` (as the connection's search_path finds them) has
 * grown past `GROWN_BYTES`; until then `name~<the small tables>`. Looks at the sizes on
 * `client` on the first call and every 10th after, while any of them is small.
 */
export async function preparedName(
  client: pg.ClientBase,
  name: string,
  tables: readonly string[],
): Promise<string> {
  let state = connections.get(client);
  if (!state) {
    state = { grown: new Set(), settled: new Set(), sinceLook: LOOK_EVERY };
    connections.set(client, state);
  }
  // The common case, on every hot statement: nothing to look at or allocate.
  if (state.settled.has(name)) return name;
  let small = tables.filter((table) => !state.grown.has(table));
  if (small.length > 0 && ++state.sinceLook >= LOOK_EVERY) {
    state.sinceLook = 0;
    const { rows } = await client.query<{ table: string; grown: boolean }>(SIZES_SQL, [small, GROWN_BYTES]);
    for (const row of rows) if (row.grown) state.grown.add(row.table);
    small = small.filter((table) => !state.grown.has(table));
  }
  if (small.length > 0) return `${name}~${small.join('+')}`;
  state.settled.add(name);
  return name;
}
