/** True when every subject matching `wanted` also matches `pattern` (NATS wildcard rules). */
export function subjectCovers(pattern: string, wanted: string): boolean {
  const p = pattern.split('.');
  const w = wanted.split('.');
  for (let i = 0; i < p.length; i++) {
    if (p[i] === '>') return i < w.length;
    if (i >= w.length || w[i] === '>') return false;
    if (p[i] !== '*' && p[i] !== w[i]) return false;
  }
  return p.length === w.length;
}
