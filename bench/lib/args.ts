import { parseArgs } from 'node:util';
import { z } from 'zod';

const count = (min: number, max: number) => z.coerce.number().int().min(min).max(max);

export const USAGE = `usage: npm run bench -- [scenario...] [options]

Runs every scenario, or the ones named, and compares statehouse with its baselines.

options:
  --json            one JSON object per line per scenario × baseline (instead of a table)
  --events N        events (or jobs) per scenario (default: the scenario's, e.g. ingest 50000)
  --entities N      distinct entities the events are spread over (default 1000)
  --batch-size N    ingest batch size for statehouse and the batched baseline (default 500)
  --repeat N        run each variant N times and report the median run (default 1)
  --variants a,b    the baselines to compare with, instead of the scenario's defaults
  --handler-ms a,b  e2e: how long each demo handler's service call takes, in ms; one
                    comparison per value (default 0,10: instant, and a nearby service)
  --quiet S         before each measured run, wait up to S seconds for an idle machine (default 0)
  --cpu-prof        write a CPU profile of each measured window to .statehouse/bench/
  --help            this text`;

export function argsSchema(scenarioNames: readonly string[]) {
  return z
    .object({
      scenarios: z.array(
        z.string().refine((s) => scenarioNames.includes(s), {
          error: (issue) => `unknown scenario "${String(issue.input)}"; known: ${scenarioNames.join(', ')}`,
        }),
      ),
      json: z.boolean(),
      events: count(1, 10_000_000).optional(),
      entities: count(1, 10_000_000).optional(),
      batchSize: count(1, 10_000),
      repeat: count(1, 20),
      variants: z
        .string()
        .optional()
        .transform((v) => (v === undefined ? undefined : v.split(',').filter(Boolean))),
      handlerMs: z
        .string()
        .regex(/^\d+(,\d+)*$/, { error: 'give whole milliseconds separated by commas, e.g. 0,10' })
        .transform((v) => v.split(',').map(Number))
        .refine((list) => list.every((ms) => ms <= 10_000), { error: 'at most 10000 ms per call' }),
      quiet: count(0, 3600),
      cpuProf: z.boolean(),
      help: z.boolean(),
    })
    .refine((a) => a.entities === undefined || a.events === undefined || a.entities <= a.events, {
      error: '--entities cannot exceed --events',
      path: ['entities'],
    });
}

export type BenchArgs = z.infer<ReturnType<typeof argsSchema>>;

/** Parses argv (after the script name); throws with a readable message on bad input. */
export function parseBenchArgs(argv: readonly string[], scenarioNames: readonly string[]): BenchArgs {
  const { values, positionals } = parseArgs({
    args: [...argv],
    allowPositionals: true,
    strict: true,
    options: {
      json: { type: 'boolean', default: false },
      events: { type: 'string' },
      entities: { type: 'string' },
      'batch-size': { type: 'string', default: '500' },
      repeat: { type: 'string', default: '1' },
      variants: { type: 'string' },
      'handler-ms': { type: 'string', default: '0,10' },
      quiet: { type: 'string', default: '0' },
      'cpu-prof': { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
  const parsed = argsSchema(scenarioNames).safeParse({
    scenarios: positionals,
    json: values.json,
    events: values.events,
    entities: values.entities,
    batchSize: values['batch-size'],
    repeat: values.repeat,
    variants: values.variants,
    handlerMs: values['handler-ms'],
    quiet: values.quiet,
    cpuProf: values['cpu-prof'],
    help: values.help,
  });
  if (!parsed.success) {
    const flag = (p: PropertyKey | undefined) =>
      p === 'scenarios' || p === undefined
        ? 'scenario'
        : `--${String(p).replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`;
    throw new Error(parsed.error.issues.map((i) => `${flag(i.path[0])}: ${i.message}`).join('\n'));
  }
  return parsed.data;
}
