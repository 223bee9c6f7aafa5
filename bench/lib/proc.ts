// CPU time of the processes a benchmark depends on, read from /proc (Linux). Elsewhere the
// readers return empty snapshots and the figures that need them come out as NaN.
import { spawnSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';

const CLOCK_TICKS = (() => {
  const out = spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' });
  const ticks = Number(out.stdout?.trim());
  return Number.isFinite(ticks) && ticks > 0 ? ticks : 100;
})();

export interface ProcessCpu {
  pid: number;
  comm: string;
  /** Seconds of CPU the process used itself (not its children: the postmaster's would add up
   * whole lifetimes of unrelated sessions that happen to end during a run). */
  seconds: number;
}

function readProcessCpu(pid: number): ProcessCpu | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const open = stat.indexOf('(');
    const close = stat.lastIndexOf(')');
    const comm = stat.slice(open + 1, close);
    // Fields after "(comm) ": state is field 3, utime 14, stime 15.
    const fields = stat.slice(close + 2).split(' ');
    const ticks = Number(fields[11]) + Number(fields[12]);
    return { pid, comm, seconds: ticks / CLOCK_TICKS };
  } catch {
    return undefined; // gone, or not Linux
  }
}

function listPids(): number[] {
  try {
    return readdirSync('/proc')
      .filter((name) => /^\d+$/.test(name))
      .map(Number);
  } catch {
    return [];
  }
}

export interface SystemCpu {
  /** Seconds all cores spent busy (user, nice, system, irq, softirq, steal). */
  busy: number;
  /** Seconds all cores spent waiting for I/O. */
  iowait: number;
  total: number;
}

function readSystemCpu(): SystemCpu {
  try {
    const line = readFileSync('/proc/stat', 'utf8').split('\n')[0] ?? '';
    const [, ...rest] = line.trim().split(/\s+/);
    const v = rest.map(Number);
    const [user = 0, nice = 0, system = 0, idle = 0, iowait = 0, irq = 0, softirq = 0, steal = 0] = v;
    const busy = user + nice + system + irq + softirq + steal;
    return {
      busy: busy / CLOCK_TICKS,
      iowait: iowait / CLOCK_TICKS,
      total: (busy + idle + iowait) / CLOCK_TICKS,
    };
  } catch {
    return { busy: Number.NaN, iowait: Number.NaN, total: Number.NaN };
  }
}

export interface CpuSnapshot {
  processes: Map<number, ProcessCpu>;
  system: SystemCpu;
}

/** CPU counters of every postgres and nats-server process, and of `extraPids`. */
export function cpuSnapshot(extraPids: readonly number[] = []): CpuSnapshot {
  const processes = new Map<number, ProcessCpu>();
  const wanted = new Set(extraPids);
  for (const pid of listPids()) {
    const cpu = readProcessCpu(pid);
    if (!cpu) continue;
    if (wanted.has(pid) || cpu.comm === 'postgres' || cpu.comm === 'nats-server') processes.set(pid, cpu);
  }
  return { processes, system: readSystemCpu() };
}

export interface CpuDelta {
  /** Postgres processes whose pid is in `backendPids` (the run's own sessions). */
  postgresBackends: number;
  /** The same, by the sessions' application_name. */
  postgresByApp: Map<string, number>;
  /** Every postgres process: the run's sessions, WAL writer, checkpointer, other sessions. */
  postgresAll: number;
  natsServer: number;
  /** Each of `extraPids`, by pid. */
  extra: Map<number, number>;
  machineBusy: number;
  machineIowait: number;
  machineTotal: number;
}

/**
 * CPU seconds used between two snapshots. A process that started after `before` counts
 * from zero; one that ended before `after` is lost (the run's own Postgres sessions stay
 * connected until the end, so that loses nothing that matters here; `postgresAll` may
 * miss short-lived sessions of other programs).
 */
export function cpuDelta(
  before: CpuSnapshot,
  after: CpuSnapshot,
  backendPids: ReadonlyMap<number, string>,
): CpuDelta {
  let postgresBackends = 0;
  const postgresByApp = new Map<string, number>();
  let postgresAll = 0;
  let natsServer = 0;
  const extra = new Map<number, number>();
  for (const [pid, now] of after.processes) {
    const then = before.processes.get(pid);
    const used = now.seconds - (then && then.comm === now.comm ? then.seconds : 0);
    if (now.comm === 'postgres') {
      postgresAll += used;
      const app = backendPids.get(pid);
      if (app !== undefined) {
        postgresBackends += used;
        postgresByApp.set(app, (postgresByApp.get(app) ?? 0) + used);
      }
    } else if (now.comm === 'nats-server') {
      natsServer += used;
    } else {
      extra.set(pid, used);
    }
  }
  return {
    postgresBackends,
    postgresByApp,
    postgresAll,
    natsServer,
    extra,
    machineBusy: after.system.busy - before.system.busy,
    machineIowait: after.system.iowait - before.system.iowait,
    machineTotal: after.system.total - before.system.total,
  };
}

/**
 * On a shared machine, waits (up to `maxSeconds`) for a one-second window in which less
 * than a quarter of the cores' time was busy, so a measured run does not start in the
 * middle of someone else's burst. Returns whether it found one.
 */
export async function waitForQuiet(maxSeconds: number, progress: (line: string) => void): Promise<boolean> {
  if (maxSeconds <= 0) return true;
  const deadline = Date.now() + maxSeconds * 1000;
  let warned = false;
  while (Date.now() < deadline) {
    const a = readSystemCpu();
    await new Promise((r) => setTimeout(r, 1000));
    const b = readSystemCpu();
    const busy = (b.busy - a.busy) / (b.total - a.total);
    if (!(busy >= 0.25)) return true;
    if (!warned)
      progress(`machine ${Math.round(busy * 100)}% busy; waiting up to ${maxSeconds}s for it to settle`);
    warned = true;
  }
  progress('machine still busy; measuring anyway');
  return false;
}
