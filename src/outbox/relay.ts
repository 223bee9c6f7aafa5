import type { JetStreamClient } from '@nats-io/jetstream';
import { headers as natsHeaders } from '@nats-io/transport-node';
import type pg from 'pg';
import { AdvisoryLease } from '../db/index.ts';
import type { Logger } from '../shared/logger.ts';
import { PollingLoop } from '../shared/polling-loop.ts';
import { groupByEntity } from '../store/index.ts';

export interface OutboxRelayOptions {
  pool: pg.Pool;
  databaseUrl: string;
  schema: string;
  js: JetStreamClient;
  subjectPrefix: string;
  notifyChannel: string;
  batchSize?: number;
  pollIntervalMs?: number;
  /** Sent rows older than this are deleted (`outbox.keepSentHours`). */
  keepSentHours: number;
  log: Logger;
}

/** How often the relaying process deletes sent rows past their keep time. */
const PRUNE_INTERVAL_MS = 60_000;
/** Sent rows one prune statement reads at most: a bounded statement, the rest next round. */
const PRUNE_BATCH = 5000;

interface Row {
  id: number;
  machine: string;
  entityId: string;
  subject: string;
  type: string;
  data: unknown;
  headers: Record<string, string>;
}

/**
 * Publishes emitted events to NATS in outbox order. One process relays at a time (an
 * advisory lock elects it), so each entity's events go out in the order they were
 * written. Each message carries `Nats-Msg-Id` = the outbox row's identity, so a crash
 * between publishing and marking the row sent only makes JetStream drop the repeat.
 */
export class OutboxRelay {
  readonly #o: OutboxRelayOptions;
  readonly #loop: PollingLoop;
  readonly #lease: AdvisoryLease;
  #database: string | undefined;
  #pruneDueAt = 0;
  /** Where the pruning under way goes on; undefined between prunes. */
  #pruneAfter: number | undefined;

  constructor(options: OutboxRelayOptions) {
    this.#o = options;
    this.#loop = new PollingLoop({
      name: 'outbox relay',
      databaseUrl: options.databaseUrl,
      channel: options.notifyChannel,
      pollIntervalMs: options.pollIntervalMs ?? 1000,
      log: options.log,
      round: async () => {
        if (!(await this.#lease.tryAcquire())) return { more: false };
        // Publishing first: emitted events do not wait behind housekeeping. Pruning still
        // runs when a row that cannot be published makes relayOnce throw.
        let sent = 0;
        let pruning = false;
        try {
          sent = await this.relayOnce();
        } finally {
          pruning = await this.#pruneWhenDue();
        }
        return { more: sent > 0 || pruning };
      },
    });
    this.#lease = new AdvisoryLease({
      url: options.databaseUrl,
      key: `statehouse.outbox:${options.schema}`,
      applicationName: `statehouse-outbox:${process.pid}`,
    });
  }

  start(): void {
    this.#loop.start();
  }

  async stop(): Promise<void> {
    await this.#loop.stop();
    await this.#lease.release();
  }

  /**
   * Deletes the rows sent more than `keepSentHours` ago; resolves with how many. Rows are
   * only transport once JetStream has them: the emitted events stay in the emit stream for
   * as long as it keeps them. (The relay itself does this a page per round, after
   * publishing, once a minute.)
   */
  async pruneSent(): Promise<number> {
    let deleted = 0;
    for (let after = 0; ; ) {
      const page = await this.#prunePage(after);
      deleted += page.deleted;
      if (page.last === undefined) return deleted;
      after = page.last;
    }
  }

  /**
   * Deletes, among the oldest `PRUNE_BATCH` sent rows after id `after`, those past their
   * keep time. `last` is where the next page starts, or undefined when no page is worth
   * reading: this one was short, or none of it was due (the rows after it were sent later,
   * but for a few held back behind an earlier event, which are due later still).
   */
  async #prunePage(after: number): Promise<{ deleted: number; last: number | undefined }> {
    // By id (the primary key), not by sent_at, which no index has: when nothing is due, that
    // would read the whole table.
    const { rows } = await this.#o.pool.query<{ scanned: number; last: number | null; deleted: number }>(
      `with page as (
         select id from outbox where sent_at is not null and id > $3 order by id limit $2
       ), gone as (
         -- By id through the primary key (a join would hash the whole table).
         delete from outbox
         where id = any(array(select id from page)) and sent_at < now() - $1::float8 * interval '1 hour'
         returning id
       )
       select (select count(*) from page)::int as scanned, (select max(id) from page) as last,
              (select count(*) from gone)::int as deleted`,
      [this.#o.keepSentHours, PRUNE_BATCH, after],
    );
    const { scanned, last, deleted } = rows[0]!;
    return {
      deleted,
      last: scanned === PRUNE_BATCH && deleted > 0 && last !== null ? Number(last) : undefined,
    };
  }

  /** A page of pruning per round once a minute, until none is worth reading; true while it goes on. */
  async #pruneWhenDue(): Promise<boolean> {
    if (this.#pruneAfter === undefined && Date.now() < this.#pruneDueAt) return false;
    try {
      const page = await this.#prunePage(this.#pruneAfter ?? 0);
      if (page.last !== undefined) {
        this.#pruneAfter = page.last;
        return true;
      }
    } catch (error) {
      // Relaying matters more; the next minute tries again.
      this.#o.log.warn({ err: error }, 'deleting sent outbox rows failed; will retry');
    }
    this.#pruneAfter = undefined;
    this.#pruneDueAt = Date.now() + PRUNE_INTERVAL_MS;
    return false;
  }

  /** Publishes one batch of unsent rows; resolves with how many went out. */
  async relayOnce(): Promise<number> {
    const { pool, js, subjectPrefix, batchSize = 500, log } = this.#o;
    const { rows } = await pool.query<Row>(
      `select id, machine, entity_id as "entityId", subject, type, data, headers
       from outbox where sent_at is null order by id limit $1`,
      [batchSize],
    );
    if (rows.length === 0) return 0;
    this.#database ??= (await pool.query<{ name: string }>('select current_database() as name'))
      .rows[0]!.name;
    const database = this.#database;
    // Entities are independent: publish them side by side, each one's events in order.
    const byEntity = groupByEntity(rows);
    const sent: number[] = [];
    const failed: Array<{ id: number; error: string }> = [];
    await Promise.all(
      [...byEntity.values()].map(async (entityRows) => {
        for (const row of entityRows) {
          const h = natsHeaders();
          for (const [k, v] of Object.entries(row.headers)) h.set(k, v);
          h.set('Nats-Msg-Id', `statehouse-outbox:${database}:${this.#o.schema}:${row.id}`);
          try {
            await js.publish(
              subjectPrefix + row.subject,
              JSON.stringify({ type: row.type, data: row.data }),
              {
                headers: h,
              },
            );
            sent.push(row.id);
          } catch (error) {
            // Later events of this entity wait, so they never overtake this one.
            failed.push({ id: row.id, error: (error as Error).message });
            log.warn(
              { id: row.id, subject: row.subject, err: error },
              'publishing an emitted event failed; will retry',
            );
            return;
          }
        }
      }),
    );
    if (sent.length > 0)
      await pool.query('update outbox set sent_at = now() where id = any($1::bigint[])', [sent]);
    if (failed.length > 0) {
      await pool.query(
        `update outbox o set attempts = attempts + 1, last_error = f.error
         from unnest($1::bigint[], $2::text[]) as f(id, error) where o.id = f.id`,
        [failed.map((f) => f.id), failed.map((f) => f.error)],
      );
      throw new Error(
        `${failed.length} emitted event(s) could not be published (first: ${failed[0]!.error})`,
      );
    }
    return sent.length;
  }
}
