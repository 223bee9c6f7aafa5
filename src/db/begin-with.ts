import pg from 'pg';
import { quoteIdent } from './pool.ts';

/**
 * Beginning a transaction with its first statement, in one round trip. node-postgres
 * waits for each query's answer before it sends the next (its `pipeline` option sends
 * them at once, but as separate writes, and for every client of a pool), so `begin` costs
 * a round trip of its own; on a busy machine that is a socket write, a wake-up of the
 * server and a read, worth more than the statement's own planning.
 *
 * The statement is prepared once per connection with SQL `PREPARE`, and each run is one
 * simple-protocol query, `begin; execute name(...)`, its arguments written as literals.
 * So it suits statements whose arguments are the engine's own (limits, machine names):
 * a literal is part of the statement's text, which Postgres shows in `pg_stat_activity`
 * and logs with an error, where a bound parameter is not. Data stays in bound parameters.
 */

/** A statement to prepare: its name, its SQL with `$n` parameters, and their types. */
export interface BeginStatement {
  name: string;
  text: string;
  types: readonly string[];
}

/** What can be written as an argument: integers, text, text arrays, null. */
export type LiteralArg = number | string | readonly string[] | null;

const prepared = new WeakMap<pg.ClientBase, Set<string>>();

/** `arg` as an SQL literal. */
function literal(arg: LiteralArg): string {
  if (arg === null) return 'null';
  if (typeof arg === 'number') {
    // Only integers: anything else would need a format this does not promise.
    if (!Number.isSafeInteger(arg)) throw new TypeError(`not an integer argument: ${arg}`);
    return String(arg);
  }
  // The escape-string form when the text holds a backslash: read the same whatever
  // standard_conforming_strings is.
  if (typeof arg === 'string') return pg.escapeLiteral(arg);
  return arg.length === 0
    ? `'{}'::text[]`
    : `array[${arg.map((s) => pg.escapeLiteral(s)).join(',')}]::text[]`;
}

/**
 * Begins a transaction on `client` and runs `statement` with `args` in it, in one round
 * trip; resolves with the statement's result. The caller commits or rolls back.
 */
export async function beginWith<R extends pg.QueryResultRow>(
  client: pg.ClientBase,
  statement: BeginStatement,
  args: readonly LiteralArg[],
): Promise<pg.QueryResult<R>> {
  const name = quoteIdent(statement.name);
  const list = (items: readonly string[]) => (items.length === 0 ? '' : ` (${items.join(', ')})`);
  // Written before anything is sent: an argument it cannot write fails with nothing sent.
  const execute = `execute ${name}${list(args.map(literal))}`;
  let names = prepared.get(client);
  if (!names) {
    names = new Set();
    prepared.set(client, names);
  }
  if (!names.has(statement.name)) {
    // Postgres cuts longer names short, and two names alike in their first 63 bytes would
    // then collide.
    if (Buffer.byteLength(statement.name) > 63) {
      throw new TypeError(`statement name longer than 63 bytes: ${statement.name}`);
    }
    await client.query(`prepare ${name}${list(statement.types)} as ${statement.text}`);
    names.add(statement.name);
  }
  const [, result] = (await client.query(`begin; ${execute}`)) as unknown as pg.QueryResult<R>[];
  return result!;
}
