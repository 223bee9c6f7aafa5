import { describe, expect, it } from 'vitest';
import { BatchReader } from '../src/ingest/index.ts';

/** A source that yields 0..count-1, each after `gapMs`. */
async function* slowSource(count: number, gapMs: number) {
  for (let i = 0; i < count; i++) {
    await new Promise((r) => setTimeout(r, gapMs));
    yield i;
  }
}

describe('BatchReader', () => {
  it('never drops an item that arrives as a batch window closes', async () => {
    // Gaps close to the window make items land right at its edge again and again.
    const reader = new BatchReader(slowSource(200, 2));
    const seen: number[] = [];
    for (;;) {
      const batch = await reader.next(7, 3);
      if (!batch) break;
      seen.push(...batch);
      // Storing a batch takes a while; items keep arriving meanwhile.
      await new Promise((r) => setTimeout(r, 4));
    }
    expect(seen).toEqual(Array.from({ length: 200 }, (_, i) => i));
  });

  it('caps batches at the maximum size', async () => {
    const reader = new BatchReader(slowSource(10, 0));
    const sizes: number[] = [];
    for (;;) {
      const batch = await reader.next(4, 50);
      if (!batch) break;
      sizes.push(batch.length);
    }
    expect(sizes).toEqual([4, 4, 2]);
  });

  it('keeps filling a batch until the window promise settles, then stores what it has', async () => {
    const reader = new BatchReader(slowSource(30, 5));
    let endStore: () => void = () => {};
    const store = new Promise<void>((resolve) => {
      endStore = resolve;
    });
    setTimeout(() => endStore(), 60);
    const first = await reader.next(100, () => store);
    // Items arrive every 5 ms; the window stayed open for the 60 ms the "store" took.
    expect(first!.length).toBeGreaterThanOrEqual(8);
    const second = await reader.next(100, () => Promise.resolve());
    // With nothing in flight the next batch goes at once, with the first item to arrive.
    expect(second!.length).toBeLessThanOrEqual(2);
    expect(second![0]).toBe(first!.at(-1)! + 1);
  });
});
