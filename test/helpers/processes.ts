import { type ChildProcess, spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { TestContext } from './context.ts';

const ENGINE_PROCESS = fileURLToPath(new URL('../fixtures/engine-process.ts', import.meta.url));

export interface EngineProcess {
  child: ChildProcess;
  /** SIGKILL: no cleanup, no flush, exactly what a crash looks like. */
  kill9(): Promise<void>;
  stop(): Promise<void>;
}

/** Starts an engine in a child process with the test file's database, stream and prefix. */
export async function spawnEngine(t: TestContext, env: Record<string, string> = {}): Promise<EngineProcess> {
  const child = spawn(process.execPath, ['--import', 'tsx', ENGINE_PROCESS], {
    env: { ...t.processEnv(), ...env },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('engine process did not become ready in 30s')), 30_000);
    // STATEHOUSE_TEST_ECHO=1 shows the engines' own logs, for debugging a test.
    if (process.env.STATEHOUSE_TEST_ECHO) child.stdout!.pipe(process.stderr);
    child.stdout!.on('data', (chunk: Buffer) => {
      if (chunk.toString().includes('ready')) {
        clearTimeout(timer);
        resolve();
      }
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`engine process exited with ${code} before it was ready`));
    });
  });
  return {
    child,
    async kill9() {
      child.kill('SIGKILL');
      await exited;
    },
    async stop() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      await exited;
    },
  };
}
