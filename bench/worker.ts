// One measured consumer in its own process; started by bench/lib/harness.ts, never by hand.
import { fileURLToPath } from 'node:url';
import { workerSpecSchema } from './lib/protocol.ts';
import { harnessInbox, RunClock, type WorkerTask } from './lib/task.ts';

function send(message: unknown): void {
  if (process.connected) process.send?.(message);
}

// The harness went away (interrupted, crashed): nobody is measuring any more.
process.on('disconnect', () => process.exit(1));

async function main(): Promise<void> {
  if (!process.send) throw new Error('bench/worker.ts is started by the benchmark harness, not by hand');
  const spec = workerSpecSchema.parse(JSON.parse(process.env.BENCH_WORKER ?? 'null'));
  const url = new URL(spec.module, import.meta.url);
  if (!fileURLToPath(url).startsWith(fileURLToPath(new URL('.', import.meta.url)))) {
    throw new Error(`worker module ${spec.module} is outside bench/`);
  }
  const task = (await import(url.href)).default as WorkerTask;
  const input = task.input.parse(spec.input);
  const clock = new RunClock(spec.profile, send, harnessInbox());
  await task.run(input, clock);
}

main().then(
  () => process.exit(0),
  (error: unknown) => {
    const message = error instanceof Error ? (error.stack ?? error.message) : String(error);
    send({ type: 'failed', message });
    // Give the IPC channel a moment to deliver the failure before exiting.
    setTimeout(() => process.exit(1), 100);
  },
);
