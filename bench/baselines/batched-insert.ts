// Baseline "batched-insert": the limit for JetStream → Postgres ingest on this machine,
// written the way a competent engineer would write it by hand, with the same delivery
// guarantees as statehouse's ingest (ack only after commit, stream order, dedupe).
//
//  * A pull consumer with a callback keeps deliveries flowing into a buffer while Postgres
//    works, so fetching overlaps storing.
//  * Batches of up to `batchSize` messages are stored by one multi-row statement (one
//    statement in autocommit is one transaction: one round trip, one WAL flush).
//  * While a batch's statement runs, the next batch is decoded and encoded (`pipeline`),
//    so Node's work overlaps Postgres's. Only one statement is in flight at a time, which
//    keeps commits in stream order.
//  * After the commit, one ack with AckPolicy.All acknowledges the whole batch (`ackAll`);
//    otherwise each message is acked.
//  * Redeliveries are deduped on the message id (Nats-Msg-Id).
// The tuning switches exist to show what each choice is worth (docs/performance.md).
import { AckPolicy, DeliverPolicy, type JsMsg, jetstream, jetstreamManager } from '@nats-io/jetstream';
import { connect } from '@nats-io/transport-node';
import pg from 'pg';
import { ingestInput } from '../lib/ingest-input.ts';
import { defineTask } from '../lib/task.ts';
import { entityTokenIndex, toRow } from './rows.ts';
import { arrayQuery, jsonQuery } from './schema.ts';

interface Prepared {
  messages: JsMsg[];
  query: pg.QueryConfig;
}

export default defineTask({
  input: ingestInput,
  async run(input, clock) {
    const { ackAll, pipeline, encoding } = input.tuning;
    const db = new pg.Client({ connectionString: input.databaseUrl, application_name: 'bench-batched' });
    await db.connect();
    const nc = await connect({ servers: input.natsUrl, name: 'bench-batched' });
    const jsm = await jetstreamManager(nc);
    await jsm.consumers.add(input.stream, {
      durable_name: input.consumer,
      ack_policy: ackAll ? AckPolicy.All : AckPolicy.Explicit,
      deliver_policy: DeliverPolicy.All,
      ack_wait: 30_000_000_000,
      max_ack_pending: input.maxAckPending,
    });
    const consumer = await jetstream(nc).consumers.get(input.stream, input.consumer);
    const entityToken = entityTokenIndex(input.subjectPrefix);
    Object.assign(clock.notes, { ackAll, pipeline, encoding });

    const encode = (messages: JsMsg[]): Prepared => {
      const rows = messages.map((msg) => toRow(msg, entityToken, input.stream));
      return { messages, query: encoding === 'json' ? jsonQuery(rows) : arrayQuery(rows) };
    };

    const buffer: JsMsg[] = [];
    let wake: (() => void) | undefined;
    const take = async (): Promise<JsMsg[]> => {
      while (buffer.length === 0) {
        await new Promise<void>((resolve) => {
          wake = resolve;
        });
        wake = undefined;
      }
      return buffer.splice(0, input.batchSize);
    };

    await clock.start();
    const messages = await consumer.consume({
      max_messages: input.batchSize * 2,
      callback: (msg) => {
        buffer.push(msg);
        wake?.();
      },
    });
    let last = 0;
    let next: Prepared | undefined = encode(await take());
    while (next) {
      const current: Prepared = next;
      next = undefined;
      const t = performance.now();
      const stored = db.query(current.query);
      const lastOfBatch = current.messages.at(-1)!.seq;
      // Work on the next batch while Postgres works on this one; never wait for messages here.
      if (pipeline && lastOfBatch < input.lastSeq && buffer.length > 0) {
        next = encode(buffer.splice(0, input.batchSize));
      }
      await stored;
      const transactionMs = performance.now() - t;
      if (ackAll) current.messages.at(-1)!.ack();
      else for (const msg of current.messages) msg.ack();
      last = Math.max(last, lastOfBatch);
      clock.commit(current.messages.length, transactionMs);
      if (last >= input.lastSeq) break;
      next ??= encode(await take());
    }
    await clock.finish();
    await messages.close();
    await nc.drain();
    await db.end();
  },
});
