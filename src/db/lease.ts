import pg from 'pg';

/**
 * A Postgres advisory lock held by a session of its own: whoever holds it leads (the
 * ingest of a stream, the outbox relay). Closing the session releases it, so a process that
 * dies gives it up. A process that does not hold it keeps its session and tries again on
 * it, instead of connecting anew for every try.
 */
export class AdvisoryLease {
  readonly #url: string;
  readonly #key: string;
  readonly #applicationName: string;
  readonly #onLost: () => void;
  #client: pg.Client | undefined;
  #held = false;

  /** `onLost` runs when the session ends or fails while the lock is held. */
  constructor(options: { url: string; key: string; applicationName: string; onLost?: () => void }) {
    this.#url = options.url;
    this.#key = options.key;
    this.#applicationName = options.applicationName;
    this.#onLost = options.onLost ?? (() => {});
  }

  get held(): boolean {
    return this.#held;
  }

  /** Takes the lock if it is free; true while this process holds it. */
  async tryAcquire(): Promise<boolean> {
    if (this.#held) return true;
    const client = this.#client ?? (await this.#connect());
    const { rows } = await client.query<{ locked: boolean }>(
      'select pg_try_advisory_lock(hashtext($1)) as locked',
      [this.#key],
    );
    this.#held = rows[0]?.locked === true;
    return this.#held;
  }

  /** Gives the lock up by closing the session. */
  async release(): Promise<void> {
    const client = this.#client;
    this.#client = undefined;
    this.#held = false;
    await client?.end().catch(() => {});
  }

  async #connect(): Promise<pg.Client> {
    const client = new pg.Client({ connectionString: this.#url, application_name: this.#applicationName });
    const lost = () => {
      if (this.#client !== client) return;
      this.#client = undefined;
      const wasHeld = this.#held;
      this.#held = false;
      if (wasHeld) this.#onLost();
    };
    client.on('error', lost);
    client.on('end', lost);
    try {
      await client.connect();
    } catch (error) {
      await client.end().catch(() => {});
      throw error;
    }
    this.#client = client;
    return client;
  }
}
