import type { ConsumerMessages, JetStreamClient, JetStreamManager, JsMsg } from '@nats-io/jetstream';
import type pg from 'pg';
import { AdvisoryLease, HeldConnection, isRetryableDatabaseError, sleep } from '../db/index.ts';
import { StatehouseError } from '../errors/index.ts';
import type { Logger } from '../shared/logger.ts';
import { encodeEvents, isDuplicateMessageError, type NewEvent } from '../store/index.ts';
import type { WorkflowRegistry } from '../workflows/index.ts';
import { BatchReader } from './batches.ts';
import { type ParseResult, parseMessage, type RawMessage } from './envelope.ts';
import { type QuarantinedMessage, quarantineMessages } from './quarantine.ts';
import { storeBatch } from './store-batch.ts';
import { ensureConsumer } from './stream.ts';

export interface IngestorOptions {
  pool: pg.Pool;
  databaseUrl: string;
  js: JetStreamClient;
  jsm: JetStreamManager;
  registry: WorkflowRegistry;
  stream: string;
  consumer: string;
  batchSize: number;
  flushIntervalMs: number;
  maxPayloadBytes: number;
  ackWaitMs: number;
  maxDeliver: number;
  notifyChannel: string;
  log: Logger;
  /** Fault hooks for tests: called at the named point, may throw to simulate a crash there. */
  hooks?: { afterCommit?: (messages: readonly JsMsg[]) => void | Promise<void> };
}

class LeadershipLost extends StatehouseError {
  constructor(stream: string) {
    super('SERVICE_UNAVAILABLE', `another process took over ingest of stream "${stream}"`, {
      retryable: true,
    });
  }
}

/**
 * Moves messages from the JetStream consumer into Postgres, in stream order.
 *
 * One process at a time ingests a stream (a Postgres advisory lock elects it), so the
 * order in which events are stored is JetStream's order. A checkpoint row, advanced in
 * the same transaction as the events, fences a leader that lost its lock without
 * noticing, and tells a new leader where to resume. Messages are acked only after
 * that transaction has committed.
 */
export class Ingestor {
  readonly #o: IngestorOptions;
  #running = false;
  #stopping = new AbortController();
  #loop: Promise<void> | undefined;
  #messages: ConsumerMessages | undefined;
  readonly #lease: AdvisoryLease;
  /**
   * The leader's one connection for storing batches, held while it leads. Taken from the pool
   * for each batch instead, the statement would go out only after the next batch's parsing
   * (pool.connect answers on a later turn of the event loop), and Postgres would wait for it.
   */
  readonly #connection: HeldConnection;
  #stored = 0;

  constructor(options: IngestorOptions) {
    this.#o = options;
    this.#connection = new HeldConnection(options.pool);
    this.#lease = new AdvisoryLease({
      url: options.databaseUrl,
      key: `statehouse.ingest:${options.stream}`,
      // The pid in the name lets an operator (and the tests) see which process leads.
      applicationName: `statehouse-ingest:${process.pid}`,
      // Leadership gone: stop reading; the batch in hand fails its checkpoint fence.
      onLost: () => this.#messages?.stop(),
    });
  }

  /** Messages stored (as events or in quarantine) by this process since start. */
  get stored(): number {
    return this.#stored;
  }

  start(): void {
    if (this.#running) return;
    this.#running = true;
    this.#stopping = new AbortController();
    this.#loop = this.#run();
  }

  /** Stores the batch in hand, then stops; unacked messages are redelivered to the next leader. */
  async stop(): Promise<void> {
    this.#running = false;
    this.#stopping.abort();
    // stop(), not close(): close() resolves only once every buffered message has been
    // read, and nobody reads them once we stop. They are unacked, so JetStream hands them
    // to the next leader, which resumes at the checkpoint.
    this.#messages?.stop();
    await this.#loop;
  }

  async #run(): Promise<void> {
    let failures = 0;
    while (this.#running) {
      try {
        if (await this.#lease.tryAcquire()) {
          failures = 0;
          await this.#lead();
        } else {
          await sleep(1000, this.#stopping.signal);
        }
      } catch (error) {
        if (!this.#running) break;
        failures++;
        this.#o.log.warn({ err: error, stream: this.#o.stream }, 'ingest interrupted; resuming');
        await sleep(Math.min(10_000, 200 * 2 ** failures), this.#stopping.signal);
      } finally {
        // Leading ended (stop, error, lost lock): let another process lead. A process that
        // did not get the lock keeps its session and tries again on it.
        if (this.#lease.held) await this.#lease.release();
      }
    }
    await this.#lease.release();
  }

  async #lead(): Promise<void> {
    const { js, jsm, stream, consumer, batchSize, flushIntervalMs, ackWaitMs, maxDeliver, log } = this.#o;
    let checkpoint = await this.#readCheckpoint();
    // Resumes at the checkpoint when the consumer cannot deliver in order from where it is.
    await ensureConsumer(jsm, {
      stream,
      consumer,
      ackWaitMs,
      maxDeliver,
      maxAckPending: batchSize * 4,
      checkpoint,
    });
    log.info({ stream, consumer, checkpoint }, 'leading ingest');

    const messages = await (await js.consumers.get(stream, consumer)).consume({
      max_messages: batchSize * 2,
    });
    this.#messages = messages;
    const reader = new BatchReader<JsMsg>(messages);
    // While one batch's transaction runs, the next is read and parsed: the stores stay
    // one after another, in stream order, but Node and Postgres work at the same time.
    let storing: Promise<number> | undefined;
    try {
      while (this.#running && this.#lease.held) {
        // Adaptive: while the previous batch is being stored this one cannot be stored
        // anyway, so it fills until that store ends; then it waits at most flushIntervalMs
        // more. A lone message at a quiet moment is stored within flushIntervalMs.
        const inFlight = storing;
        const batch = await reader.next(batchSize, async () => {
          await inFlight?.catch(() => {});
          await sleep(flushIntervalMs);
        });
        if (!batch) break;
        const prepared = this.#prepare(batch);
        if (storing) checkpoint = await storing;
        storing = this.#storeWithRetry(prepared, checkpoint);
        // A failed store ends the read at once, so the loop gets to the failure without
        // waiting for another message to arrive; awaited above or below.
        storing.catch(() => messages.stop());
      }
      if (storing) checkpoint = await storing;
    } finally {
      messages.stop();
      this.#messages = undefined;
      // A read that failed leaves a store in flight; its connection goes back only after it.
      await storing?.catch(() => {});
      this.#connection.release();
    }
  }

  async #readCheckpoint(): Promise<number> {
    const { rows } = await this.#o.pool.query<{ last_seq: number }>(
      `insert into ingest_checkpoints (stream, last_seq) values ($1, 0)
       on conflict (stream) do update set stream = excluded.stream
       returning last_seq`,
      [this.#o.stream],
    );
    return rows[0]!.last_seq;
  }

  /** Parses a batch; which messages are new is decided at store time, against the checkpoint. */
  #prepare(batch: JsMsg[]): PreparedBatch {
    const { registry, stream, maxPayloadBytes } = this.#o;
    let top = batch[0]!;
    let topSeq = 0;
    const items = batch.map((msg) => {
      const raw = toRaw(msg, stream);
      if (raw.seq > topSeq) {
        top = msg;
        topSeq = raw.seq;
      }
      return { raw, parsed: parseMessage(raw, registry, { maxPayloadBytes }) };
    });
    // Encoded now, while the previous batch's statement runs; all but redeliveries are fresh.
    const encoded = encodeEvents(items.flatMap(({ parsed }) => (parsed.ok ? [parsed.event] : [])));
    return { messages: batch, items, top, topSeq, encoded };
  }

  /** Keeps retrying the same batch while Postgres is away: moving on would break order. */
  async #storeWithRetry(batch: PreparedBatch, checkpoint: number): Promise<number> {
    for (let attempt = 0; ; attempt++) {
      try {
        return await this.#store(batch, checkpoint);
      } catch (error) {
        if (
          error instanceof LeadershipLost ||
          !this.#running ||
          !this.#lease.held ||
          // A duplicate: another writer stored one of these messages first, and the dedupe
          // sees it on the next try.
          !(isRetryableDatabaseError(error) || isDuplicateMessageError(error))
        ) {
          throw error;
        }
        this.#o.log.warn({ err: error, attempt }, 'storing a batch failed; retrying');
        await sleep(Math.min(5000, 100 * 2 ** attempt), this.#stopping.signal);
      }
    }
  }

  async #store(batch: PreparedBatch, checkpoint: number): Promise<number> {
    const { stream, notifyChannel, hooks } = this.#o;
    // Redeliveries of messages already stored are only acked.
    const fresh = batch.items.filter((item) => item.raw.seq > checkpoint);
    const events: NewEvent[] = [];
    const quarantined: QuarantinedMessage[] = [];
    for (const { raw, parsed } of fresh) {
      if (parsed.ok) events.push(parsed.event);
      else quarantined.push({ raw, ...parsed });
    }
    const last = Math.max(checkpoint, batch.topSeq);
    if (fresh.length > 0) {
      const encoded = fresh.length === batch.items.length ? batch.encoded : encodeEvents(events);
      const write = async (client: pg.ClientBase) => {
        const advanced = await storeBatch(client, { encoded, stream, checkpoint, last, notifyChannel });
        if (!advanced) throw new LeadershipLost(stream);
        await quarantineMessages(client, quarantined);
      };
      // Without quarantined messages the batch is one statement: no begin and commit.
      await this.#connection.run(write, { autocommit: quarantined.length === 0 });
      this.#stored += fresh.length;
      for (const q of quarantined) {
        this.#o.log.warn(
          { subject: q.raw.subject, seq: q.raw.seq, reason: q.reasonCode },
          `quarantined: ${q.reason}`,
        );
      }
    }
    await hooks?.afterCommit?.(batch.messages);
    // The consumer acks all (AckPolicy.All): acking the batch's highest sequence acks every
    // message up to it, and all of those are stored, this batch's just now and the older
    // ones before (the checkpoint covers them).
    batch.top.ack();
    return last;
  }
}

interface PreparedBatch {
  messages: JsMsg[];
  items: Array<{ raw: RawMessage; parsed: ParseResult }>;
  /** The message with the highest stream sequence: its ack acknowledges the batch. */
  top: JsMsg;
  topSeq: number;
  /** Every parsed event, encoded for the store. */
  encoded: string;
}

function toRaw(msg: JsMsg, stream: string): RawMessage {
  const headers: Record<string, string> = {};
  // Iterating gives each header's values as stored (first one wins, as headers.get does),
  // without get()'s search through every key for each one.
  if (msg.headers) for (const [key, values] of msg.headers) headers[key] = values[0] ?? '';
  // The reply subject is parsed once (msg.info caches it), for the sequence and the time.
  const { streamSequence, timestampNanos } = msg.info;
  return {
    subject: msg.subject,
    data: msg.data,
    headers,
    stream,
    seq: streamSequence,
    publishedAt: new Date(Math.floor(timestampNanos / 1_000_000)),
  };
}
