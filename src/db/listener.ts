import pg from 'pg';
import type { Logger } from '../shared/logger.ts';
import { quoteIdent } from './pool.ts';
import { sleep } from './transaction.ts';

/**
 * A dedicated connection that LISTENs on one channel and calls `onNotify` with each
 * notification's payload. It reconnects with backoff when Postgres goes away, and calls
 * `onNotify()` without a payload after each (re)connect because notifications sent while
 * it was away are gone: the caller must look for all work.
 */
export class Listener {
  readonly #url: string;
  readonly #channel: string;
  readonly #onNotify: (payload?: string) => void;
  readonly #log: Logger;
  #client: pg.Client | undefined;
  #stopped = false;
  #loop: Promise<void> | undefined;

  constructor(url: string, channel: string, onNotify: (payload?: string) => void, log: Logger) {
    this.#url = url;
    this.#channel = channel;
    this.#onNotify = onNotify;
    this.#log = log;
  }

  start(): void {
    this.#loop ??= this.#run();
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    await this.#client?.end().catch(() => {});
    await this.#loop;
  }

  async #run(): Promise<void> {
    let attempt = 0;
    while (!this.#stopped) {
      const client = new pg.Client({ connectionString: this.#url, application_name: 'statehouse-listen' });
      this.#client = client;
      const closed = new Promise<void>((resolve) => {
        client.on('error', () => resolve());
        client.on('end', () => resolve());
      });
      try {
        await client.connect();
        client.on('notification', (message) => this.#onNotify(message.payload || undefined));
        await client.query(`listen ${quoteIdent(this.#channel)}`);
        attempt = 0;
        this.#onNotify();
        await closed;
      } catch (error) {
        if (!this.#stopped)
          this.#log.warn({ err: error, channel: this.#channel }, 'listen connection failed');
      }
      await client.end().catch(() => {});
      if (this.#stopped) return;
      this.#log.warn({ channel: this.#channel }, 'listen connection lost; reconnecting');
      await sleep(Math.min(5000, 100 * 2 ** attempt++));
    }
  }
}
