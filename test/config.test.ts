import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { loadConfig } from '../src/config/index.ts';
import { environmentVariables } from '../src/config/schema.ts';
import { ConfigError } from '../src/errors/index.ts';
import { defineHandler } from '../src/jobs/index.ts';

describe('config', () => {
  it('has working defaults with nothing set', () => {
    const config = loadConfig({ env: {}, file: '' });
    expect(config.database.schema).toBe('statehouse');
    expect(config.database.url).toBeUndefined();
    expect(config.ingest.batchSize).toBe(500);
    expect(Object.isFrozen(config.ingest)).toBe(true);
  });

  it('reads environment variables over the config file', () => {
    const dir = mkdtempSync(join(tmpdir(), 'statehouse-config-'));
    const file = join(dir, 'statehouse.config.json');
    writeFileSync(file, JSON.stringify({ ingest: { batchSize: 100, flushIntervalMs: 7 } }));
    const config = loadConfig({ env: { STATEHOUSE_INGEST_BATCH_SIZE: '250' }, file });
    expect(config.ingest).toMatchObject({ batchSize: 250, flushIntervalMs: 7 });
  });

  it('names the environment variable and what it expects when a value is wrong', () => {
    expect(() => loadConfig({ env: { STATEHOUSE_INGEST_BATCH_SIZE: 'lots' }, file: '' })).toThrow(
      /STATEHOUSE_INGEST_BATCH_SIZE: .*number/,
    );
    expect(() => loadConfig({ env: { STATEHOUSE_SCHEMA: 'Bad-Schema' }, file: '' })).toThrow(
      /STATEHOUSE_SCHEMA: a lower-case SQL identifier/,
    );
    expect(() => loadConfig({ env: { DATABASE_URL: 'not a url' }, file: '' })).toThrow(ConfigError);
  });

  it('names the file and property for a wrong value in the config file, and rejects unknown keys', () => {
    const dir = mkdtempSync(join(tmpdir(), 'statehouse-config-'));
    const file = join(dir, 'statehouse.config.json');
    writeFileSync(file, JSON.stringify({ dispatcher: { concurrency: 0 } }));
    expect(() => loadConfig({ env: {}, file })).toThrow(
      /dispatcher\.concurrency in .*statehouse\.config\.json/,
    );
    writeFileSync(file, JSON.stringify({ ingset: {} }));
    expect(() => loadConfig({ env: {}, file })).toThrow(/ingset/);
    // A misspelt setting inside a section is refused too, not silently ignored.
    writeFileSync(file, JSON.stringify({ ingest: { batchSiz: 5 } }));
    expect(() => loadConfig({ env: {}, file })).toThrow(/ingest.*batchSiz/);
    writeFileSync(file, '{ not json');
    expect(() => loadConfig({ env: {}, file })).toThrow(/is not valid/);
  });

  it('refuses a handler named like the end of a queue name, saying why', () => {
    const handler = (name: string) => () =>
      defineHandler({ name, input: z.object({}), run: async () => null });
    expect(handler('compensate')).toThrow(
      'handler "compensate": name is reserved ("compensate" and "dead" end queue names); pick another',
    );
    expect(handler('dead')).toThrow(/handler "dead": name is reserved/);
    expect(handler('deadLetterAudit')().name).toBe('deadLetterAudit');
  });

  it('documents every environment variable in docs/configuration.md, with the property it sets', () => {
    const doc = readFileSync(new URL('../docs/configuration.md', import.meta.url), 'utf8');
    for (const [name, property] of Object.entries(environmentVariables)) {
      expect(doc, name).toMatch(
        new RegExp(`\\|\\s*\`${name}\`\\s*\\|\\s*\`${property.replace('.', '\\.')}\``),
      );
    }
  });
});
