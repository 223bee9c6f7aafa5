import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { resolve } from 'node:path';
import { jetstreamManager } from '@nats-io/jetstream';
import { connect } from '@nats-io/transport-node';
import { ServiceUnavailableError } from '../errors/index.ts';
import type { Logger } from '../shared/logger.ts';
import { portAnswers, waitForPort } from './probe.ts';

export interface NatsService {
  url: string;
  origin: 'configured' | 'local' | 'started';
  stop(): Promise<void>;
}

export interface NatsResolveOptions {
  url: string | undefined;
  autoStart: boolean;
  dataDir: string;
  log: Logger;
  host?: string;
  port?: number;
}

const noop = async () => {};

/**
 * NATS_URL when given; else a server on the standard local port; else a
 * `nats-server -js` from the PATH with its store under the data dir. JetStream must be on.
 */
export async function resolveNats(options: NatsResolveOptions): Promise<NatsService> {
  const host = options.host ?? '127.0.0.1';
  const port = options.port ?? 4222;
  if (options.url) {
    await checkJetStream(options.url, 'NATS_URL');
    return { url: options.url, origin: 'configured', stop: noop };
  }
  const localUrl = `nats://${host}:${port}`;
  if (await portAnswers(host, port)) {
    await checkJetStream(localUrl, `the NATS server on ${host}:${port}`);
    return { url: localUrl, origin: 'local', stop: noop };
  }
  if (!options.autoStart) {
    throw new ServiceUnavailableError(
      `no NATS answers on ${host}:${port} and STATEHOUSE_AUTOSTART is off; start one or set NATS_URL`,
    );
  }
  const found = spawnSync('nats-server', ['--version'], { encoding: 'utf8' });
  if (found.error || found.status !== 0) {
    throw new ServiceUnavailableError(
      `no NATS answers on ${host}:${port} and nats-server is not on the PATH; install it (Debian: apt-get install nats-server) or set NATS_URL`,
    );
  }
  const storeDir = resolve(options.dataDir, 'nats');
  mkdirSync(storeDir, { recursive: true });
  options.log.info({ storeDir, port }, 'no NATS answers; starting nats-server -js');
  const child: ChildProcess = spawn('nats-server', ['-js', '-a', host, '-p', String(port), '-sd', storeDir], {
    stdio: 'ignore',
  });
  if (!(await waitForPort(host, port, 10_000))) {
    child.kill('SIGKILL');
    throw new ServiceUnavailableError(`nats-server did not start listening on ${host}:${port} within 10s`);
  }
  await checkJetStream(localUrl, 'the nats-server statehouse started');
  return {
    url: localUrl,
    origin: 'started',
    stop: () =>
      new Promise<void>((done) => {
        if (child.exitCode !== null) return done();
        child.once('exit', () => done());
        child.kill('SIGTERM');
      }),
  };
}

async function checkJetStream(url: string, what: string): Promise<void> {
  let nc: Awaited<ReturnType<typeof connect>> | undefined;
  try {
    nc = await connect({ servers: url, timeout: 5000 });
  } catch (cause) {
    throw new ServiceUnavailableError(`cannot connect to ${what} (${url}): ${(cause as Error).message}`, {
      cause,
    });
  }
  try {
    const jsm = await jetstreamManager(nc, { timeout: 5000 });
    await jsm.getAccountInfo();
  } catch (cause) {
    throw new ServiceUnavailableError(
      `${what} (${url}) has no JetStream: ${(cause as Error).message}; start nats-server with -js`,
      { cause },
    );
  } finally {
    await nc.close();
  }
}
