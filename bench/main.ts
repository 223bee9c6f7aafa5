// `npm run bench -- [scenario...] [--json] [--events N] [--entities N] [--batch-size N]
// [--repeat N] [--variants a,b] [--quiet S] [--cpu-prof]` — see bench/lib/args.ts and
// docs/performance.md.
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { type BenchArgs, parseBenchArgs, USAGE } from './lib/args.ts';
import { killWorkers } from './lib/harness.ts';
import { describeMachine } from './lib/machine.ts';
import { jsonLines, machineLine, type RunRecord, table } from './lib/report.ts';
import { BenchServices } from './lib/services.ts';
import { type Scenario, scenarios } from './scenarios/index.ts';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

function help(): string {
  const lines = [USAGE, '', 'scenarios and their baselines (* = run by default):'];
  for (const s of scenarios) {
    lines.push(
      `  ${s.name}: ${s.description} (default ${s.defaults.events} events, ${s.defaults.entities} entities)`,
    );
    for (const v of s.variants) lines.push(`    ${v.default ? '*' : ' '} ${v.name}: ${v.description}`);
  }
  return lines.join('\n');
}

/** The --variants that belong to this scenario; none means its defaults. */
function variantsFor(scenario: Scenario, names: readonly string[] | undefined): string[] | undefined {
  const own = (names ?? []).filter((v) => scenario.variants.some((x) => x.name === v));
  return own.length > 0 ? own : undefined;
}

function parse(argv: readonly string[]): BenchArgs | string {
  let args: BenchArgs;
  try {
    args = parseBenchArgs(
      argv,
      scenarios.map((s) => s.name),
    );
  } catch (error) {
    return (error as Error).message;
  }
  const selected = selectedScenarios(args);
  const unknown = (args.variants ?? []).filter(
    (v) => !selected.some((s) => s.variants.some((x) => x.name === v)),
  );
  if (unknown.length > 0) return `--variants: no selected scenario has a baseline ${unknown.join(', ')}`;
  return args;
}

function selectedScenarios(args: BenchArgs): readonly Scenario[] {
  return args.scenarios.length > 0 ? scenarios.filter((s) => args.scenarios.includes(s.name)) : scenarios;
}

async function main(argv: readonly string[]): Promise<number> {
  const args = parse(argv);
  if (typeof args === 'string') {
    console.error(`${args}\n\n${help()}`);
    return 2;
  }
  if (args.help) {
    console.log(help());
    return 0;
  }
  const profileDir = args.cpuProf ? path.join(ROOT, '.statehouse', 'bench') : undefined;
  if (profileDir) mkdirSync(profileDir, { recursive: true });
  const progress = (line: string) => console.error(`bench: ${line}`);
  const command = `npm run bench -- ${argv.join(' ')}`.trim();

  const services = await BenchServices.resolve();
  let interrupted = false;
  const stopping = () => {
    interrupted = true;
    progress('interrupted; dropping this run’s databases and streams');
    killWorkers();
    services.stop().finally(() => process.exit(130));
  };
  process.once('SIGINT', stopping);
  process.once('SIGTERM', stopping);
  let failed = false;
  try {
    const machine = await describeMachine(services.adminUrl, services.natsUrl);
    if (args.json) progress(machineLine(machine));
    else console.log(`${machineLine(machine)}\n`);
    if (machine.loadAverage > machine.cores * 0.5) {
      progress(
        `warning: load average ${machine.loadAverage} on ${machine.cores} cores; figures will be noisy`,
      );
    }
    for (const scenario of selectedScenarios(args)) {
      try {
        const result = await scenario.run({
          services,
          runId: BenchServices.runId(),
          progress,
          options: {
            events: args.events ?? scenario.defaults.events,
            entities: Math.min(
              args.entities ?? scenario.defaults.entities,
              args.events ?? scenario.defaults.events,
            ),
            batchSize: args.batchSize,
            repeat: args.repeat,
            variants: variantsFor(scenario, args.variants),
            handlerMs: args.handlerMs,
            quietSeconds: args.quiet,
            profileDir,
          },
        });
        const record: RunRecord = { command, machine, result };
        if (args.json) for (const line of jsonLines(record)) console.log(line);
        else console.log(`${table(scenario.name, result.rows[0]?.unit ?? '', record)}\n`);
      } catch (error) {
        failed = true;
        if (!interrupted) progress(`${scenario.name} failed: ${(error as Error).stack ?? String(error)}`);
      } finally {
        await services.cleanup();
      }
    }
  } finally {
    await services.stop();
  }
  return failed ? 1 : 0;
}

process.exitCode = await main(process.argv.slice(2));
