import { readFileSync } from 'node:fs';
import { Command } from 'commander';
import { z } from 'zod';
import { dispatchChannel } from '../db/index.ts';
import { UsageError } from '../errors/index.ts';
import {
  dropQuarantined,
  getQuarantined,
  listQuarantine,
  type RedriveOptions,
  redriveAllHeld,
  redriveQuarantined,
} from '../ingest/index.ts';
import { WorkflowRegistry } from '../workflows/index.ts';
import { loadApp } from './app.ts';
import { commandContext, withDatabase } from './context.ts';

const ids = z.array(z.coerce.number().int().positive({ message: 'ids are positive whole numbers' }));

function parseIds(values: readonly string[]): number[] {
  const parsed = ids.safeParse(values);
  if (!parsed.success) throw new UsageError(`${values.join(' ')}: quarantine ids are positive whole numbers`);
  return parsed.data;
}

function preview(payload: Buffer): string {
  const text = payload.toString('utf8');
  return text.length > 60 ? `${text.slice(0, 57)}…` : text;
}

export function quarantineCommand(): Command {
  const command = new Command('quarantine').description(
    'inspect, re-drive or drop messages that failed validation',
  );

  command
    .command('list')
    .description('held messages, oldest first')
    .option('--all', 'include re-driven and dropped ones')
    .option('--limit <n>', 'at most this many', '100')
    .option('--json', 'print JSON')
    .action(async (options: { all?: boolean; limit: string; json?: boolean }) => {
      const limit = z.coerce.number().int().min(1).max(10_000).safeParse(options.limit);
      if (!limit.success) throw new UsageError('--limit takes a whole number from 1 to 10000');
      const { config, log } = commandContext();
      await withDatabase(config, log, async (pool) => {
        const rows = await listQuarantine(pool, { includeResolved: options.all ?? false, limit: limit.data });
        if (options.json) {
          console.log(
            JSON.stringify(
              rows.map((r) => ({ ...r, payload: r.payload.toString('utf8') })),
              null,
              2,
            ),
          );
          return;
        }
        if (rows.length === 0) console.log('no quarantined messages');
        for (const r of rows) {
          console.log(
            `${String(r.id).padStart(5)}  ${r.status.padEnd(8)}  ${r.reasonCode.padEnd(18)}  ${r.subject}  ${preview(r.payload)}`,
          );
        }
      });
    });

  command
    .command('show <id>')
    .description('one message: reason, headers and payload')
    .option('--json', 'print JSON')
    .action(async (id: string, options: { json?: boolean }) => {
      const [n] = parseIds([id]);
      const { config, log } = commandContext();
      await withDatabase(config, log, async (pool) => {
        const row = await getQuarantined(pool, n!);
        const view = { ...row, payload: row.payload.toString('utf8') };
        if (options.json) return console.log(JSON.stringify(view, null, 2));
        console.log(
          [
            `message ${row.id} (${row.status})`,
            `  reason   ${row.reasonCode}: ${row.reason}`,
            `  subject  ${row.subject}`,
            `  nats     stream ${row.natsStream ?? '-'} seq ${row.natsSeq ?? '-'}, message id ${row.messageId}`,
            `  received ${row.receivedAt.toISOString()}`,
            `  headers  ${JSON.stringify(row.headers)}`,
            `  payload  ${view.payload}`,
          ].join('\n'),
        );
      });
    });

  command
    .command('redrive [ids...]')
    .description('validate held messages again with the current workflows; store those that pass')
    .option('--all', 'every held message')
    .option(
      '--payload <file>',
      'validate this corrected payload (a file, or - for stdin) instead of the held one; one id only',
    )
    .option('--app <module>', 'a module exporting `workflows` and `handlers` (default: the shipped demo)')
    .action(async (values: string[], options: { all?: boolean; app?: string; payload?: string }) => {
      if (!options.all && values.length === 0)
        throw new UsageError('name the ids to re-drive, or pass --all');
      if (options.payload !== undefined && (options.all || values.length !== 1))
        throw new UsageError('--payload corrects one message: name exactly one id, without --all');
      const payloads =
        options.payload === undefined
          ? undefined
          : new Map([[parseIds(values)[0]!, readPayload(options.payload)]]);
      const { config, log } = commandContext();
      const app = await loadApp(options.app);
      const registry = new WorkflowRegistry(app.workflows, { subjectPrefix: config.nats.subjectPrefix });
      await withDatabase(config, log, async (pool) => {
        const redrive: Omit<RedriveOptions, 'payloads'> = {
          maxPayloadBytes: config.nats.maxPayloadBytes,
          notifyChannel: dispatchChannel(config.database.schema),
          // Said as each commits: when a later one fails, the earlier ones stand.
          onOutcome: (o) => {
            if (o.outcome === 'still-invalid') process.exitCode = 1;
            if (o.outcome === 'stored')
              console.log(`${o.id}: stored as an event of ${o.machine} ${o.entityId}`);
            else if (o.outcome === 'still-invalid')
              console.log(`${o.id}: still invalid, kept: ${o.reasonCode}: ${o.reason}`);
            else console.log(`${o.id}: not held (${o.status}), left alone`);
          },
        };
        if (options.all) {
          // Every held message, a page of ids at a time: however many there are, no payload
          // is read before its turn.
          await redriveAllHeld(pool, registry, redrive);
        } else {
          await redriveQuarantined(pool, registry, parseIds(values), {
            ...redrive,
            ...(payloads ? { payloads } : {}),
          });
        }
      });
    });

  command
    .command('drop <ids...>')
    .description('discard held messages (they stay in the table, marked dropped)')
    .action(async (values: string[]) => {
      const targets = parseIds(values);
      const { config, log } = commandContext();
      await withDatabase(config, log, async (pool) => {
        const dropped = await dropQuarantined(pool, targets);
        console.log(`dropped ${dropped} of ${targets.length} message(s)`);
      });
    });

  return command;
}

/** The bytes of a corrected payload: a file, or standard input for `-`. */
function readPayload(file: string): Uint8Array {
  try {
    return new Uint8Array(readFileSync(file === '-' ? 0 : file));
  } catch (error) {
    throw new UsageError(
      `cannot read the corrected payload from ${file === '-' ? 'stdin' : `"${file}"`}: ${(error as Error).message}`,
    );
  }
}
