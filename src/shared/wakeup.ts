/**
 * A wake-up signal for polling loops: `wait(ms)` resolves on the next `wake()` or after
 * `ms`, whichever comes first. A wake with nobody waiting is remembered, so a notification
 * that lands while a loop is busy is not lost.
 */
export class Wakeup {
  #pending = false;
  #waiters: Array<() => void> = [];

  wake(): void {
    if (this.#waiters.length === 0) {
      this.#pending = true;
      return;
    }
    const waiters = this.#waiters;
    this.#waiters = [];
    for (const resolve of waiters) resolve();
  }

  wait(ms: number): Promise<void> {
    if (this.#pending) {
      this.#pending = false;
      return Promise.resolve();
    }
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.#waiters = this.#waiters.filter((w) => w !== done);
        resolve();
      };
      const timer = setTimeout(done, ms);
      this.#waiters.push(done);
    });
  }
}
