import { Command } from 'commander';
import { z } from 'zod';
import { dispatchChannel, jobsChannel } from '../db/index.ts';
import { UsageError } from '../errors/index.ts';
import { JobOperations, type JobSummary } from '../jobs/index.ts';
import { commandContext, withDatabase } from './context.ts';

const listOptions = z.strictObject({
  machine: z.string().min(1).optional(),
  entity: z.string().min(1).optional(),
  handler: z.string().min(1).optional(),
  state: z
    .enum(['pending', 'dead', 'created', 'retry', 'active', 'completed', 'cancelled', 'failed'])
    .optional(),
  kind: z.enum(['run', 'compensate']).optional(),
  limit: z.coerce.number().int().min(1).max(10_000),
  json: z.boolean().optional(),
});

/** Runs `work` with job operations over the configured database. */
async function withOperations<T>(work: (ops: JobOperations) => Promise<T>): Promise<T> {
  const { config, log } = commandContext();
  return withDatabase(config, log, async (pool, databaseUrl) => {
    const ops = await JobOperations.open({
      databaseUrl,
      pool,
      bossSchema: config.jobs.schema,
      notifyChannel: dispatchChannel(config.database.schema),
      wakeChannel: jobsChannel(config.database.schema),
    });
    try {
      return await work(ops);
    } finally {
      await ops.close();
    }
  });
}

function line(job: JobSummary): string {
  const where = job.deadLetter ? 'dead letter' : job.state;
  const error = (job.output as { message?: unknown } | null)?.message;
  const tail = typeof error === 'string' && job.state !== 'completed' ? `  ${error}` : '';
  return `${job.id}  ${job.createdOn.toISOString()}  ${where.padEnd(11)}  ${job.handler}${job.kind === 'compensate' ? ' (compensate)' : ''}  ${job.machine} ${job.entityId}  try ${job.attempts}${job.retryLimit === null ? '' : `/${job.retryLimit + 1}`}${tail}`;
}

export function jobsCommand(): Command {
  const command = new Command('jobs').description(
    'list handler jobs; retry a failed one, redrive a dead letter, cancel a pending one',
  );

  command
    .command('list')
    .description('jobs, newest first')
    .option('--machine <name>', 'only this machine’s entities')
    .option('--entity <id>', 'only this entity’s jobs')
    .option('--handler <name>', 'only this handler’s jobs')
    .option('--state <state>', 'pending, dead, created, retry, active, completed, cancelled or failed')
    .option('--kind <kind>', 'run (a handler’s run) or compensate (its undo)')
    .option('--limit <n>', 'at most this many', '100')
    .option('--json', 'print JSON')
    .action(async (raw: Record<string, unknown>) => {
      const parsed = listOptions.safeParse(raw);
      if (!parsed.success) {
        const issue = parsed.error.issues[0]!;
        throw new UsageError(`--${issue.path.join('.')}: ${issue.message}`);
      }
      const { entity, ...rest } = parsed.data;
      await withOperations(async (ops) => {
        const jobs = await ops.list({ ...rest, entityId: entity });
        if (parsed.data.json) return console.log(JSON.stringify(jobs, null, 2));
        if (jobs.length === 0) return console.log('no jobs match');
        for (const job of jobs) console.log(line(job));
      });
    });

  command
    .command('show <id>')
    .description('one job, as JSON')
    .action(async (id: string) => {
      await withOperations(async (ops) => console.log(JSON.stringify(await ops.get(id), null, 2)));
    });

  const rerun = (name: 'retry' | 'redrive', description: string) =>
    command
      .command(`${name} <id>`)
      .description(description)
      .option('--reason <text>', 'why, kept in the entity’s history')
      .option('--force', 'run it even though its entity is done (its machine will ignore the outcome)')
      .action(async (id: string, options: { reason?: string; force?: boolean }) => {
        await withOperations(async (ops) => {
          const r = await ops[name](id, {
            ...(options.reason ? { reason: options.reason } : {}),
            force: options.force === true,
          });
          console.log(
            `${name === 'retry' ? 'retried' : 'redrove'} ${r.handler} for ${r.machine} ${r.entityId}: job ${r.newJobId} runs in place of ${name === 'retry' ? 'failed job' : 'dead letter'} ${r.jobId}`,
          );
        });
      });
  rerun('retry', 'run a failed (or cancelled) job again: same data, same idempotency key');
  rerun('redrive', 'move a dead letter back to its queue, to run again with the same idempotency key');

  command
    .command('cancel <id>')
    .description('cancel a job that has not started; its entity gets the job’s failure outcome')
    .option('--reason <text>', 'why, kept in the entity’s history')
    .action(async (id: string, options: { reason?: string }) => {
      await withOperations(async (ops) => {
        const r = await ops.cancel(id, options.reason ? { reason: options.reason } : {});
        console.log(
          `cancelled job ${r.jobId} (${r.handler} for ${r.machine} ${r.entityId}); the entity gets ${r.outcome} (code JOB_CANCELLED)`,
        );
      });
    });

  return command;
}
