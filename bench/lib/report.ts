import { type Figures, ratioOf, type ScenarioResult } from '../scenarios/types.ts';
import { type MachineInfo, machineLine } from './machine.ts';
import { summarizeProfile } from './profile.ts';
import { formatNumber, type Percentiles, round } from './stats.ts';

type Json = string | number | boolean | null | Json[] | { [key: string]: Json };

/** camelCase keys → snake_case, NaN → null: the JSON lines are read by scripts. */
function toJson(value: unknown): Json {
  if (typeof value === 'number') return Number.isFinite(value) ? value : null;
  if (typeof value === 'string' || typeof value === 'boolean' || value === null) return value;
  if (Array.isArray(value)) return value.map(toJson);
  if (value instanceof Map) return toJson(Object.fromEntries(value));
  if (typeof value === 'object' && value !== undefined) {
    const out: { [key: string]: Json } = {};
    for (const [k, v] of Object.entries(value)) {
      if (v === undefined) continue;
      const key = k.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`).replace(/([a-z])(\d)/g, '$1_$2');
      out[key] = toJson(v);
    }
    return out;
  }
  return null;
}

export interface RunRecord {
  command: string;
  machine: MachineInfo;
  result: ScenarioResult;
}

/** One JSON line per scenario × baseline. */
export function jsonLines(record: RunRecord): string[] {
  return record.result.rows.map((row) => {
    const ratio = ratioOf(row);
    return JSON.stringify(
      toJson({
        scenario: row.scenario,
        baseline: row.baseline,
        unit: row.unit,
        statehouse: row.statehouse.value,
        baselineValue: row.baselineFigures.value,
        ratio: round(ratio, 3),
        higherIsBetter: row.higherIsBetter,
        target: row.target,
        meetsTarget: row.target === undefined ? undefined : ratio >= row.target,
        statehouseFigures: withProfile(row.statehouse),
        baselineFigures: withProfile(row.baselineFigures),
        ...(row.reference
          ? {
              reference: row.reference.figures.variant,
              referenceValue: row.reference.figures.value,
              referenceRatio: round(ratioOf(row, row.reference.figures), 3),
              referenceMeaning: row.reference.meaning,
              referenceFigures: withProfile(row.reference.figures),
            }
          : {}),
        settings: record.result.settings,
        machine: record.machine,
        command: record.command,
      }),
    );
  });
}

function withProfile(f: Figures): Figures & { profileSummary?: ReturnType<typeof summarizeProfile> } {
  return f.profile ? { ...f, profileSummary: summarizeProfile(f.profile) } : f;
}

const pct = (p: Percentiles | undefined) =>
  p ? `${formatNumber(p.p50, p.p50 < 10 ? 2 : 1)} / ${formatNumber(p.p99, p.p99 < 10 ? 2 : 1)}` : '—';

const COLUMNS: Array<[string, (f: Figures) => string]> = [
  // A latency row's headline is its p99 in ms; its variant name ends in "latency".
  ['rate | p99 ms', (f) => formatNumber(f.value)],
  ['elapsed s', (f) => formatNumber(f.elapsedS, 2)],
  ['batches', (f) => formatNumber(f.batches)],
  ['mean batch', (f) => formatNumber(f.meanBatch, 1)],
  ['cycle ms p50/p99', (f) => pct(f.cycleMs)],
  ['tx ms p50/p99', (f) => pct(f.transactionMs)],
  ['node s/1k', (f) => formatNumber(f.cpuSPer1k.node, 3)],
  ['of it kernel', (f) => formatNumber(f.cpuSPer1k.nodeKernel, 3)],
  ['pg s/1k', (f) => formatNumber(f.cpuSPer1k.postgres, 3)],
  ['pg all s/1k', (f) => formatNumber(f.cpuSPer1k.postgresAll, 3)],
  ['nats s/1k', (f) => formatNumber(f.cpuSPer1k.nats, 3)],
  ['busy %', (f) => formatNumber(f.machineBusyPct, 0)],
  ['other %', (f) => formatNumber(f.otherBusyPct, 0)],
  ['commits/1k', (f) => formatNumber(f.commitsPer1k, 1)],
  ['WAL B/item', (f) => formatNumber(f.walBytesPerItem)],
  ['peak RSS MB', (f) => formatNumber(f.peakRssMb, 0)],
];

/** A readable table for one scenario: each variant once, then the ratios. */
export function table(name: string, unit: string, record: RunRecord): string {
  const { rows, settings } = record.result;
  const variants: Figures[] = [];
  for (const row of rows) {
    const reference = row.reference ? [row.reference.figures] : [];
    for (const f of [row.statehouse, row.baselineFigures, ...reference]) {
      if (!variants.some((v) => v.variant === f.variant)) variants.push(f);
    }
  }
  const header = [`${name} (${unit})`, ...COLUMNS.map(([h]) => h)];
  const body = variants.map((f) => [f.variant, ...COLUMNS.map(([, cell]) => cell(f))]);
  const widths = header.map((h, i) => Math.max(h.length, ...body.map((r) => r[i]!.length)));
  const line = (cells: string[]) =>
    cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ');
  const out = [
    `settings: ${Object.entries(settings)
      .map(([k, v]) => `${k}=${v}`)
      .join(', ')}`,
    line(header),
    ...body.map(line),
    '',
  ];
  for (const row of rows) {
    const ratio = ratioOf(row);
    const verdict =
      row.target === undefined ? '' : ` (target ≥ ${row.target}: ${ratio >= row.target ? 'met' : 'missed'})`;
    out.push(`statehouse / ${row.baseline}, ${row.unit}: ${formatNumber(ratio, 2)}${verdict}`);
    if (row.reference) {
      const { figures, meaning } = row.reference;
      out.push(
        `  ${figures.variant} / ${row.baseline}: ${formatNumber(ratioOf(row, figures), 2)} (${meaning})`,
      );
    }
  }
  out.push('', 'Postgres CPU s/1k by session (application_name):');
  for (const f of variants) {
    const apps = Object.entries(f.postgresCpuByApp).sort((a, b) => b[1] - a[1]);
    out.push(`  ${f.variant}: ${apps.map(([app, s]) => `${app} ${formatNumber(s, 3)}`).join(', ') || '—'}`);
  }
  for (const f of variants) {
    if (!f.profile) continue;
    const s = summarizeProfile(f.profile, 8);
    out.push('', `${f.variant} CPU profile: ${f.profile}`);
    out.push(`  by area: ${s.byArea.map((a) => `${a.name} ${a.pct}%`).join(', ')}`);
    for (const t of s.topFunctions) out.push(`  ${String(t.pct).padStart(5)}%  ${t.name}`);
  }
  return out.join('\n');
}

export { machineLine };
