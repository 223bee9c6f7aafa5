// Scenario "scale": the e2e load (the order saga) with one engine process and with two,
// against the same Postgres and NATS. Prints the speed-up (two ÷ one) and checks, as every
// e2e run does, that each order's events are exactly the saga's, in order, once each.
// Here Postgres, NATS and both engines share the machine's cores, so the question is
// whether a second process holds the rate (no lock contention collapse), not whether it
// doubles it; docs/performance.md projects more cores from the measured CPU per event.
import type { WorkerRun } from '../lib/harness.ts';
import { E2E_STATEHOUSE, e2eFigures, runE2e } from './e2e.ts';
import { medianRun, type ResultRow, rateOf, type Scenario, type ScenarioContext } from './types.ts';

export const scale: Scenario = {
  name: 'scale',
  description: 'the e2e load with 2 engine processes vs 1; order and exactly-once checked',
  defaults: { events: 3000, entities: 3000 },
  variants: [{ name: 'one-process', description: 'the same load, one engine process', default: true }],
  async run(ctx: ScenarioContext) {
    const { options } = ctx;
    const orders = options.events;
    const runs = new Map<number, WorkerRun[]>();
    for (let round = 0; round < options.repeat; round++) {
      for (const processes of [1, 2]) {
        const run = await runE2e(ctx, {
          scenario: 'scale',
          label: `${processes} process${processes > 1 ? 'es' : ''}`,
          module: E2E_STATEHOUSE,
          processes,
          mode: 'throughput',
          orders,
        });
        runs.set(processes, [...(runs.get(processes) ?? []), run]);
      }
    }
    const one = medianRun(runs.get(1)!);
    const two = medianRun(runs.get(2)!);
    const row: ResultRow = {
      scenario: 'scale',
      baseline: 'one-process',
      unit: 'orders/s',
      higherIsBetter: true,
      statehouse: e2eFigures('two processes', two),
      baselineFigures: e2eFigures('one-process', one),
      target: 0.9,
    };
    const perOrder = (run: WorkerRun) => {
      const f = e2eFigures('', run);
      return f.cpuSPer1k;
    };
    const cpu1 = perOrder(one);
    return {
      rows: [row],
      settings: {
        orders,
        repeat: options.repeat,
        speedUp: Math.round((rateOf(two) / rateOf(one)) * 100) / 100,
        // Checked in every run (else it fails): all orders shipped, events 1…4 in the saga's
        // order, one emitted event each.
        orderAndExactlyOnceChecked: true,
        oneProcessEngineCpuSPer1k: cpu1.node,
        oneProcessPostgresCpuSPer1k: cpu1.postgresAll,
        oneProcessNatsCpuSPer1k: cpu1.nats,
      },
    };
  },
};
