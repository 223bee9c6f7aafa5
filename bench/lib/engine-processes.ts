import { type ChildProcess, spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const MAIN = fileURLToPath(new URL('../../src/cli/main.ts', import.meta.url));

export interface EngineProcesses {
  pids: number[];
  stop(): Promise<void>;
}

/**
 * Starts `count` engines with the demo machines, as `statehouse start` in their own
 * processes, each with `env`; resolves once all say they are running.
 */
export async function startEngines(
  count: number,
  env: Record<string, string>,
  profileDir?: string,
): Promise<EngineProcesses> {
  const children: ChildProcess[] = [];
  const stopAll = async () => {
    await Promise.all(
      children.map(
        (child) =>
          new Promise<void>((resolve) => {
            if (child.exitCode !== null || child.signalCode !== null) return resolve();
            child.once('exit', () => resolve());
            child.kill('SIGTERM');
            setTimeout(() => child.kill('SIGKILL'), 15_000).unref();
          }),
      ),
    );
  };
  try {
    for (let i = 0; i < count; i++) {
      const profile = profileDir ? ['--cpu-prof', `--cpu-prof-dir=${profileDir}`] : [];
      const child = spawn(process.execPath, [...profile, '--import', 'tsx', MAIN, 'start'], {
        env: { ...process.env, ...env, STATEHOUSE_AUTOSTART: 'false', STATEHOUSE_LOG_LEVEL: 'warn' },
        stdio: ['ignore', 'pipe', 'inherit'],
      });
      children.push(child);
      await new Promise<void>((resolve, reject) => {
        let output = '';
        const timer = setTimeout(
          () => reject(new Error(`engine ${i + 1} did not start in 60 s:\n${output}`)),
          60_000,
        );
        child.stdout!.on('data', (chunk: Buffer) => {
          output += chunk.toString();
          if (output.includes('statehouse is running')) {
            clearTimeout(timer);
            resolve();
          }
        });
        child.once('exit', (code) => {
          clearTimeout(timer);
          reject(new Error(`engine ${i + 1} exited with ${code}:\n${output}`));
        });
      });
    }
  } catch (error) {
    await stopAll();
    throw error;
  }
  return { pids: children.map((c) => c.pid!), stop: stopAll };
}
