import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { jetstream } from '@nats-io/jetstream';
import { connect, headers } from '@nats-io/transport-node';
import { z } from 'zod';
import { ENTITY_STATUSES } from '../actors/index.ts';
import { dispatchChannel, migrate } from '../db/index.ts';
import { Engine } from '../engine/index.ts';
import { getEntity, listEntities, resumeEntity, resumeFailedEntities } from '../entities/index.ts';
import { UsageError } from '../errors/index.ts';
import { resolveServices } from '../services/index.ts';
import { createLogger } from '../shared/logger.ts';
import { loadApp } from './app.ts';
import { commandContext, natsUrl, redactUrl, withDatabase } from './context.ts';
import { formatEntity } from './format.ts';

export async function migrateCommand(): Promise<void> {
  const { config, log } = commandContext();
  await withDatabase(config, log, async (pool) => {
    const result = await migrate(pool, config.database.schema);
    const names = result.applied.map((m) => `${m.version}_${m.name}`).join(', ');
    console.log(
      result.applied.length > 0
        ? `applied ${result.applied.length} migration(s): ${names}; schema "${config.database.schema}" is at ${result.current}`
        : `schema "${config.database.schema}" is up to date at ${result.current}`,
    );
  });
}

export async function entityCommand(
  id: string,
  action: string | undefined,
  options: { machine?: string; json?: boolean },
): Promise<void> {
  const { config, log } = commandContext();
  await withDatabase(config, log, async (pool) => {
    if (action === 'resume') {
      const machine = await resumeEntity(pool, id, {
        machine: options.machine,
        notifyChannel: dispatchChannel(config.database.schema),
      });
      console.log(`resumed ${machine} ${id}: the dispatcher re-applies the event that failed`);
      return;
    }
    if (action !== undefined && action !== 'show') {
      throw new UsageError(`unknown entity action "${action}"; use show or resume`);
    }
    const entity = await getEntity(pool, id, options.machine);
    console.log(options.json ? JSON.stringify(entity, null, 2) : formatEntity(entity));
  });
}

const entitiesOptions = z.object({
  machine: z.string().min(1).optional(),
  status: z.enum(ENTITY_STATUSES).optional(),
  /** Not defaulted here: resume refuses one given, and the listing has its own default. */
  limit: z.coerce.number().int().min(1).max(10_000).optional(),
  json: z.boolean().optional(),
});

export async function entitiesCommand(
  action: string | undefined,
  raw: Record<string, unknown>,
): Promise<void> {
  const parsed = entitiesOptions.safeParse(raw);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    throw new UsageError(`--${issue.path.join('.')}: ${issue.message}`);
  }
  const options = parsed.data;
  if (action !== undefined && action !== 'list' && action !== 'resume') {
    throw new UsageError(`unknown entities action "${action}"; use list or resume`);
  }
  const { config, log } = commandContext();
  if (action === 'resume') {
    const { machine } = options;
    if (machine === undefined) {
      throw new UsageError('entities resume needs --machine: the machine whose fix is deployed');
    }
    if (options.status !== undefined && options.status !== 'failed') {
      throw new UsageError('entities resume resumes failed entities; leave out --status');
    }
    if (options.limit !== undefined || options.json) {
      throw new UsageError(
        'entities resume takes --machine only: it resumes every failed entity of the machine (resume a few first with `statehouse entity <id> resume`)',
      );
    }
    await withDatabase(config, log, async (pool) => {
      const resumed = await resumeFailedEntities(pool, {
        machine,
        notifyChannel: dispatchChannel(config.database.schema),
      });
      console.log(
        resumed === 0
          ? `no failed entities of ${machine}`
          : `resumed ${resumed} failed entities of ${machine}: the dispatcher re-applies the events that failed`,
      );
    });
    return;
  }
  await withDatabase(config, log, async (pool) => {
    const rows = await listEntities(pool, options);
    if (options.json) return console.log(JSON.stringify(rows, null, 2));
    if (rows.length === 0) return console.log('no entities match');
    for (const r of rows) {
      const state = typeof r.state === 'string' ? r.state : JSON.stringify(r.state);
      const pending = r.pending > 0 ? `  (${r.pending} pending)` : '';
      console.log(
        `${r.updatedAt.toISOString()}  ${r.machine} ${r.entityId}  ${r.status}  ${state}${pending}`,
      );
    }
  });
}

export async function publishCommand(
  subject: string,
  payload: string,
  options: { id?: string },
): Promise<void> {
  const { config, log } = commandContext();
  const text = payload.startsWith('@') ? readText(payload.slice(1)) : payload;
  try {
    JSON.parse(text);
  } catch (error) {
    throw new UsageError(`the payload is not JSON (${(error as Error).message}); pass JSON or @file.json`);
  }
  const nc = await connect({ servers: await natsUrl(config, log) });
  try {
    const h = headers();
    const id = options.id ?? randomUUID();
    h.set('Nats-Msg-Id', id);
    const ack = await jetstream(nc)
      .publish(subject, text, { headers: h })
      .catch((error: unknown) => {
        throw new UsageError(
          `NATS did not store ${subject}: ${(error as Error).message}. Is a JetStream stream taking this subject? \`npm start\` creates one for the shipped machines.`,
          { cause: error },
        );
      });
    console.log(
      `published ${subject} as message ${id} → stream ${ack.stream} seq ${ack.seq}${ack.duplicate ? ' (duplicate: already stored by NATS)' : ''}`,
    );
  } finally {
    await nc.close();
  }
}

export interface StartOptions {
  app?: string;
}

/** Runs the engine until SIGINT/SIGTERM, then stops it cleanly. */
export async function startCommand(options: StartOptions): Promise<void> {
  const { config } = commandContext();
  const log = createLogger(config.log.level, { service: 'statehouse' });
  const app = await loadApp(options.app);
  const services = await resolveServices(config, log);
  let engine: Engine;
  try {
    engine = await Engine.create({
      config,
      databaseUrl: services.postgres.url,
      natsUrl: services.nats.url,
      workflows: app.workflows,
      handlers: app.handlers,
      log,
    });
    await engine.start();
  } catch (error) {
    await services.stop();
    throw error;
  }
  const subject = engine.subjects[0] ?? 'orders.*.>';
  const example = subject.replace('*', 'o-1042').replace('>', 'placed');
  console.log(
    [
      '',
      `statehouse is running (${app.workflows.map((w) => `${w.name} v${w.version}`).join(', ')})`,
      `  postgres  ${redactUrl(services.postgres.url)} (${services.postgres.origin}), schema "${config.database.schema}"`,
      `  nats      ${services.nats.url} (${services.nats.origin}), stream "${config.nats.stream}"`,
      `  subjects  ${engine.subjects.join(', ')}`,
      '',
      'publish an order with the NATS CLI:',
      `  nats pub ${example} '{"type":"order.placed","data":{"customerId":"c-7","items":[{"sku":"book-1","quantity":1}],"amountCents":2599,"paymentMethod":"visa","address":"1 Main St"}}'`,
      'or with statehouse (adds a Nats-Msg-Id):',
      `  npm run statehouse -- publish ${example} '{"type":"order.placed","data":{…}}'`,
      'then look at it:',
      '  npm run statehouse -- entity o-1042',
      '',
      'Ctrl-C stops the engine.',
    ].join('\n'),
  );
  await new Promise<void>((done) => {
    const stop = (signal: string) => {
      log.info({ signal }, 'stopping: finishing work in flight');
      done();
    };
    process.once('SIGINT', () => stop('SIGINT'));
    process.once('SIGTERM', () => stop('SIGTERM'));
  });
  await engine.stop();
  await services.stop();
  log.info('stopped');
}

function readText(file: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch (error) {
    throw new UsageError(`cannot read ${file}: ${(error as Error).message}`);
  }
}
