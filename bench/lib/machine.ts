import { spawnSync } from 'node:child_process';
import os from 'node:os';
import { connect } from '@nats-io/transport-node';
import pg from 'pg';

/** What the figures were measured on; printed and recorded with every run. */
export interface MachineInfo {
  cores: number;
  cpuModel: string;
  memoryGb: number;
  /** 1-minute load average when the run started: anything near `cores` means a busy machine. */
  loadAverage: number;
  os: string;
  node: string;
  postgres: string;
  postgresSettings: Record<string, string>;
  natsServer: string;
}

const PG_SETTINGS = [
  'synchronous_commit',
  'fsync',
  'wal_sync_method',
  'commit_delay',
  'shared_buffers',
  'max_wal_size',
] as const;

export async function describeMachine(adminUrl: string, natsUrl: string): Promise<MachineInfo> {
  const client = new pg.Client({ connectionString: adminUrl });
  await client.connect();
  let postgres: string;
  const postgresSettings: Record<string, string> = {};
  try {
    const { rows } = await client.query<{ v: string }>("select current_setting('server_version') as v");
    postgres = rows[0]?.v ?? 'unknown';
    const settings = await client.query<{ name: string; setting: string }>(
      'select name, current_setting(name) as setting from pg_settings where name = any($1)',
      [PG_SETTINGS],
    );
    for (const row of settings.rows) postgresSettings[row.name] = row.setting;
  } finally {
    await client.end();
  }
  const nc = await connect({ servers: natsUrl, name: 'statehouse-bench' });
  let natsServer = nc.info?.version ?? '';
  await nc.close();
  if (!natsServer) {
    const out = spawnSync('nats-server', ['--version'], { encoding: 'utf8' });
    natsServer = out.stdout?.trim().replace(/^nats-server:\s*v?/, '') || 'unknown';
  }
  const cpus = os.cpus();
  return {
    cores: cpus.length,
    cpuModel: cpus[0]?.model.trim() ?? 'unknown',
    memoryGb: Math.round((os.totalmem() / 2 ** 30) * 10) / 10,
    loadAverage: Math.round((os.loadavg()[0] ?? 0) * 100) / 100,
    os: `${os.type()} ${os.release()} ${os.arch()}`,
    node: process.version,
    postgres,
    postgresSettings,
    natsServer,
  };
}

export function machineLine(m: MachineInfo): string {
  const s = m.postgresSettings;
  return (
    `machine: ${m.cores} cores (${m.cpuModel}), ${m.memoryGb} GB, load ${m.loadAverage}, ${m.os}; ` +
    `Node ${m.node}; PostgreSQL ${m.postgres} (synchronous_commit=${s.synchronous_commit ?? '?'}, ` +
    `fsync=${s.fsync ?? '?'}, wal_sync_method=${s.wal_sync_method ?? '?'}, commit_delay=${s.commit_delay ?? '?'}, ` +
    `shared_buffers=${s.shared_buffers ?? '?'}); nats-server ${m.natsServer}`
  );
}
