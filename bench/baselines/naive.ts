// Baseline "naive": one message at a time — take it, store it (one prepared statement
// in autocommit: one round trip and one commit, so one WAL flush), ack it, take the
// next. Deliveries are still prefetched by the pull consumer, so what it measures is the
// per-message commit, not NATS round trips.
import { AckPolicy, DeliverPolicy, jetstream, jetstreamManager } from '@nats-io/jetstream';
import { connect } from '@nats-io/transport-node';
import pg from 'pg';
import { ingestInput } from '../lib/ingest-input.ts';
import { defineTask } from '../lib/task.ts';
import { entityTokenIndex, rowValues, toRow } from './rows.ts';
import { INSERT_ONE_SQL } from './schema.ts';

export default defineTask({
  input: ingestInput,
  async run(input, clock) {
    const db = new pg.Client({ connectionString: input.databaseUrl, application_name: 'bench-naive' });
    await db.connect();
    const nc = await connect({ servers: input.natsUrl, name: 'bench-naive' });
    const jsm = await jetstreamManager(nc);
    await jsm.consumers.add(input.stream, {
      durable_name: input.consumer,
      ack_policy: AckPolicy.Explicit,
      deliver_policy: DeliverPolicy.All,
      ack_wait: 30_000_000_000,
      max_ack_pending: input.maxAckPending,
    });
    const consumer = await jetstream(nc).consumers.get(input.stream, input.consumer);
    const entityToken = entityTokenIndex(input.subjectPrefix);

    await clock.start();
    const messages = await consumer.consume({ max_messages: 100 });
    for await (const msg of messages) {
      const t = performance.now();
      await db.query({
        name: 'store-one',
        text: INSERT_ONE_SQL,
        values: rowValues(toRow(msg, entityToken, input.stream)),
      });
      const transactionMs = performance.now() - t;
      msg.ack();
      clock.commit(1, transactionMs);
      if (msg.seq >= input.lastSeq) break;
    }
    await clock.finish();
    await messages.close();
    await nc.drain();
    await db.end();
  },
});
