// statehouse's own ingest, as `npm start` runs it but with only the ingest part on:
// Engine.create with the demo workflows and handlers, default ingest settings except the
// batch size the benchmark was given. Done when the commit holding the last message is in.
import type { JsMsg } from '@nats-io/jetstream';
import { handlers } from '../../handlers/index.ts';
import { workflows } from '../../machines/index.ts';
import { Engine } from '../../src/engine/index.ts';
import type { Handler } from '../../src/jobs/index.ts';
import { benchEngineConfig } from '../lib/engine-config.ts';
import { ingestInput } from '../lib/ingest-input.ts';
import { defineTask } from '../lib/task.ts';

export default defineTask({
  input: ingestInput,
  async run(input, clock) {
    const config = benchEngineConfig(input, { ingest: { batchSize: input.batchSize } });
    // Every part but ingest off, whichever parts this engine has.
    const parts = { ingest: true, dispatch: false, jobs: false, outbox: false };
    let allStored: () => void = () => {};
    const done = new Promise<void>((resolve) => {
      allStored = resolve;
    });
    let last = 0;
    const afterCommit = (batch: readonly JsMsg[]) => {
      clock.commit(batch.length);
      for (const msg of batch) if (msg.seq > last) last = msg.seq;
      if (last >= input.lastSeq) allStored();
    };
    const engine = await Engine.create({
      config,
      databaseUrl: input.databaseUrl,
      natsUrl: input.natsUrl,
      workflows,
      handlers: handlers as unknown as Handler<never, unknown>[],
      parts,
      hooks: { afterCommit },
    });
    clock.notes.ingestBatchSize = config.ingest.batchSize;
    clock.notes.flushIntervalMs = config.ingest.flushIntervalMs;
    clock.notes.poolSize = config.database.poolSize;
    await clock.start();
    await engine.start();
    await done;
    await clock.finish();
    await engine.stop({ graceMs: 1000 });
  },
});
