import { chmodSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { afterAll, describe, expect, it } from 'vitest';
import { portAnswers, resolveNats, resolvePostgres } from '../src/services/index.ts';
import { createLogger } from '../src/shared/logger.ts';

const log = createLogger('silent');
const dataDir = mkdtempSync(join(tmpdir(), 'statehouse-services-'));
// Like a project folder: other users (Postgres's own, when tests run as root) may enter it.
chmodSync(dataDir, 0o755);
// Ports nothing else on the machine uses, standing in for "no server on the standard port".
const PG_PORT = 54329;
const NATS_PORT = 42229;

describe('services', () => {
  afterAll(() => rmSync(dataDir, { recursive: true, force: true }));

  it('starts an embedded Postgres when none answers, and creates the database', async () => {
    expect(await portAnswers('127.0.0.1', PG_PORT)).toBe(false);
    const service = await resolvePostgres({ url: undefined, autoStart: true, dataDir, log, port: PG_PORT });
    try {
      expect(service.origin).toBe('embedded');
      const client = new pg.Client({ connectionString: service.url });
      await client.connect();
      const { rows } = await client.query<{ db: string }>('select current_database() as db');
      await client.end();
      expect(rows[0]!.db).toBe('statehouse');
      // Another process (a CLI command, a second engine) finds it on the port and can log in.
      const found = await resolvePostgres({ url: undefined, autoStart: false, dataDir, log, port: PG_PORT });
      expect(found.origin).toBe('local');
      const other = new pg.Client({ connectionString: found.url });
      await other.connect();
      await other.end();
    } finally {
      await service.stop();
    }
    expect(await portAnswers('127.0.0.1', PG_PORT)).toBe(false);
  }, 120_000);

  it('starts nats-server with JetStream when none answers', async () => {
    const service = await resolveNats({ url: undefined, autoStart: true, dataDir, log, port: NATS_PORT });
    try {
      expect(service.origin).toBe('started');
      expect(service.url).toBe(`nats://127.0.0.1:${NATS_PORT}`);
    } finally {
      await service.stop();
    }
    expect(await portAnswers('127.0.0.1', NATS_PORT)).toBe(false);
  });

  it('uses a server already on the port instead of starting one', async () => {
    const service = await resolveNats({ url: undefined, autoStart: false, dataDir, log });
    expect(service.origin).toBe('local');
  });

  it('says what to set when nothing answers and starting is off', async () => {
    await expect(
      resolvePostgres({ url: undefined, autoStart: false, dataDir, log, port: PG_PORT }),
    ).rejects.toThrow(/no Postgres answers on 127\.0\.0\.1:54329 .*set DATABASE_URL/);
    await expect(
      resolvePostgres({ url: 'postgres://nobody@127.0.0.1:54329/x', autoStart: false, dataDir, log }),
    ).rejects.toMatchObject({ code: 'SERVICE_UNAVAILABLE' });
  });
});
