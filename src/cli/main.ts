import { Command } from 'commander';
import { ENTITY_STATUSES } from '../actors/index.ts';
import { StatehouseError } from '../errors/index.ts';
import { entitiesCommand, entityCommand, migrateCommand, publishCommand, startCommand } from './commands.ts';
import { jobsCommand } from './jobs.ts';
import { quarantineCommand } from './quarantine.ts';

const program = new Command('statehouse')
  .description('Durable per-entity XState actors fed by NATS JetStream, persisted in Postgres.')
  .showHelpAfterError()
  .addHelpText(
    'after',
    '\nConfiguration comes from DATABASE_URL, NATS_URL, STATEHOUSE_* variables and statehouse.config.json (see docs/configuration.md).',
  );

program
  .command('start')
  .description('run the engine (ingest, dispatcher, job workers) until Ctrl-C')
  .option('--app <module>', 'a module exporting `workflows` and `handlers` (default: the shipped demo)')
  .action(startCommand);

program.command('migrate').description('apply pending database migrations').action(migrateCommand);

program
  .command('entity <id> [action]')
  .description(
    "show an entity's status, state, context and history (action: show), or resume a failed one (action: resume)",
  )
  .option('--machine <name>', 'the machine, when several have an entity with this id')
  .option('--json', 'print JSON')
  .action(entityCommand);

program
  .command('entities [action]')
  .description(
    'entities by machine and status, most recently changed first (action: list), or resume every failed one of a machine once it is fixed (action: resume, with --machine)',
  )
  .option('--machine <name>', 'only this machine')
  .option('--status <status>', `only this status: ${ENTITY_STATUSES.join(', ')}`)
  .option('--limit <n>', 'at most this many (default 50)')
  .option('--json', 'print JSON')
  .action(entitiesCommand);

program
  .command('publish <subject> <payload>')
  .description('publish an event to NATS JetStream; payload is JSON or @file.json')
  .option('--id <messageId>', 'the Nats-Msg-Id used for de-duplication (default: a new UUID)')
  .action(publishCommand);

program.addCommand(jobsCommand());
program.addCommand(quarantineCommand());

try {
  await program.parseAsync();
} catch (error) {
  if (error instanceof StatehouseError) {
    console.error(`statehouse: ${error.message} [${error.code}]`);
  } else {
    console.error(`statehouse: ${(error as Error).stack ?? String(error)}`);
  }
  process.exitCode = 1;
}
