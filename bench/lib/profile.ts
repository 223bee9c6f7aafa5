import { readFileSync } from 'node:fs';
import { z } from 'zod';

const profileSchema = z.object({
  nodes: z.array(
    z.object({
      id: z.number(),
      callFrame: z.object({
        functionName: z.string(),
        url: z.string(),
        lineNumber: z.number(),
      }),
    }),
  ),
  samples: z.array(z.number()).default([]),
  timeDeltas: z.array(z.number()).default([]),
});

export interface ProfileShare {
  name: string;
  pct: number;
}

export interface ProfileSummary {
  /** Where self time went, grouped by package / part of the project. */
  byArea: ProfileShare[];
  /** The functions with the most self time. */
  topFunctions: ProfileShare[];
}

/** Self time of a .cpuprofile, grouped two ways; enough to see what a path spends its CPU on. */
export function summarizeProfile(file: string, top = 10): ProfileSummary {
  const profile = profileSchema.parse(JSON.parse(readFileSync(file, 'utf8')));
  const byId = new Map(profile.nodes.map((n) => [n.id, n.callFrame]));
  const fn = new Map<string, number>();
  const area = new Map<string, number>();
  let total = 0;
  profile.samples.forEach((id, i) => {
    const frame = byId.get(id);
    const dt = profile.timeDeltas[i] ?? 0;
    if (!frame) return;
    total += dt;
    // Project files are transpiled by tsx, so their line numbers would point into its output.
    const line = frame.url.includes('/node_modules/') ? `:${frame.lineNumber + 1}` : '';
    const where = frame.url ? `${shortUrl(frame.url)}${line}` : '';
    const key = `${frame.functionName || '(anonymous)'}${where ? ` ${where}` : ''}`;
    fn.set(key, (fn.get(key) ?? 0) + dt);
    const a = areaOf(frame.url, frame.functionName);
    area.set(a, (area.get(a) ?? 0) + dt);
  });
  const shares = (m: Map<string, number>, n: number) =>
    [...m.entries()]
      .sort((a, b) => b[1] - a[1])
      .slice(0, n)
      .map(([name, t]) => ({ name, pct: Math.round((t / total) * 1000) / 10 }));
  return { byArea: shares(area, 12), topFunctions: shares(fn, top) };
}

function shortUrl(url: string): string {
  const nm = url.lastIndexOf('/node_modules/');
  if (nm >= 0) return url.slice(nm + '/node_modules/'.length);
  const root = url.indexOf('/bench/') >= 0 ? url.indexOf('/bench/') : url.indexOf('/src/');
  if (root >= 0) return url.slice(root + 1);
  return url.replace(/^file:\/\//, '');
}

function areaOf(url: string, functionName: string): string {
  if (!url) {
    if (functionName === '(idle)') return '(idle)';
    if (functionName === '(garbage collector)') return '(garbage collector)';
    if (functionName === '(program)') return '(program: native, not JS)';
    return '(native)';
  }
  if (url.startsWith('node:')) return `node:${url.slice(5).split('/')[0]}`;
  const nm = url.lastIndexOf('/node_modules/');
  if (nm >= 0) {
    const parts = url.slice(nm + '/node_modules/'.length).split('/');
    return parts[0]!.startsWith('@') ? `${parts[0]}/${parts[1]}` : parts[0]!;
  }
  for (const dir of ['/src/', '/bench/', '/machines/', '/handlers/']) {
    const at = url.indexOf(dir);
    if (at >= 0) {
      const rest = url.slice(at + 1).split('/');
      return dir === '/src/' ? `src/${rest[1]}` : rest[0]!;
    }
  }
  return url;
}
