import type pg from 'pg';
import { quoteIdent } from './pool.ts';

/**
 * Running a hot statement with `begin` before it or `commit` after it in the same round
 * trip. node-postgres sends one query at a time and cannot pipeline, so a transaction of
 * two statements costs four round trips; on a busy machine each is a socket write, a
 * wake-up of the server and a read, worth more than the statement's own planning.
 *
 * The statement is prepared once per connection with SQL `PREPARE`, and each run is one
 * simple-protocol query: `begin; execute name(...)` or `execute name(...); commit`, the
 * arguments written as literals. A failure anywhere in it runs none of what follows (a
 * failed `execute` is never followed by its `commit`).
 */

/** A statement to prepare: its name, its SQL with `$n` parameters, and their types. */
export interface FoldedStatement {
  name: string;
  text: string;
  types: readonly string[];
}

/** What can be written as an argument: integers, text (also for jsonb), text arrays, null. */
export type FoldedArg = number | string | readonly string[] | null;

const prepared = new WeakMap<pg.ClientBase, Set<string>>();

/**
 * `text` as a string literal, correct whatever `standard_conforming_strings` is: the
 * escape-string form when it holds a backslash. node-postgres's `escapeLiteral` builds
 * the same a character at a time, slow on the dispatcher's save, whose snapshots run to
 * kilobytes.
 */
export function textLiteral(text: string): string {
  const quoted = text.replaceAll("'", "''");
  return text.includes('\\') ? ` E'${quoted.replaceAll('\\', '\\\\')}'` : `'${quoted}'`;
}

/** `arg` as an SQL literal. */
function literal(arg: FoldedArg): string {
  if (arg === null) return 'null';
  if (typeof arg === 'number') {
    // Only integers: anything else would need a format this does not promise.
    if (!Number.isSafeInteger(arg)) throw new TypeError(`not an integer argument: ${arg}`);
    return String(arg);
  }
  if (typeof arg === 'string') return textLiteral(arg);
  return arg.length === 0 ? `'{}'::text[]` : `array[${arg.map(textLiteral).join(',')}]::text[]`;
}

/**
 * Runs `statement` with `args` on `client`, with `begin` sent before it or `commit` after
 * it in the same query; resolves with the statement's own result.
 */
export async function runFolded<R extends pg.QueryResultRow>(
  client: pg.ClientBase,
  statement: FoldedStatement,
  args: readonly FoldedArg[],
  fold: 'begin' | 'commit',
): Promise<pg.QueryResult<R>> {
  let names = prepared.get(client);
  if (!names) {
    names = new Set();
    prepared.set(client, names);
  }
  const name = quoteIdent(statement.name);
  if (!names.has(statement.name)) {
    await client.query(`prepare ${name} (${statement.types.join(', ')}) as ${statement.text}`);
    names.add(statement.name);
  }
  const execute = `execute ${name}(${args.map(literal).join(', ')})`;
  const results = (await client.query(
    fold === 'begin' ? `begin; ${execute}` : `${execute}; commit`,
  )) as unknown as pg.QueryResult<R>[];
  return results[fold === 'begin' ? 1 : 0]!;
}
