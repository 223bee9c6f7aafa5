import type { EntityView } from '../entities/index.ts';

export function formatEntity(entity: EntityView): string {
  const state = typeof entity.state === 'string' ? entity.state : JSON.stringify(entity.state);
  const lines = [
    `${entity.machine} ${entity.entityId}`,
    `  status   ${entity.status}${entity.appliedVersion < entity.version ? ` (${entity.version - entity.appliedVersion} events pending)` : ''}`,
    `  state    ${state}`,
    `  version  ${entity.version} (machine v${entity.machineVersion ?? '?'})`,
    `  updated  ${entity.updatedAt.toISOString()}`,
  ];
  if (entity.error) lines.push(`  error    ${JSON.stringify(entity.error)}`);
  lines.push(`  context  ${JSON.stringify(entity.context)}`);
  if (entity.saga.steps.length > 0 || entity.saga.state) {
    lines.push('', `  saga${entity.saga.state ? ` (${entity.saga.state})` : ''}`);
    const hints: string[] = [];
    for (const step of entity.saga.steps) {
      const { message, jobId } = (step.error ?? {}) as { message?: unknown; jobId?: unknown };
      lines.push(
        `    ${step.handler.padEnd(20)} ${step.status.padEnd(19)} ${step.updatedAt.toISOString()}${typeof message === 'string' ? `  ${message}` : ''}`,
      );
      if (step.status !== 'compensation-failed') continue;
      hints.push(
        typeof jobId === 'string'
          ? `    ${step.handler}'s undo failed for good: fix the cause, then \`statehouse jobs retry ${jobId}\``
          : `    ${step.handler}'s undo could not start: ${typeof message === 'string' ? message : 'see the error above'}`,
      );
    }
    lines.push(...hints);
  }
  lines.push('', '  history');
  const width = Math.max(...entity.history.map((e) => e.type.length), 4);
  for (const event of entity.history) {
    const applied = event.version <= entity.appliedVersion ? ' ' : '…';
    lines.push(
      `  ${applied}${String(event.version).padStart(4)}  ${event.recordedAt.toISOString()}  ${event.type.padEnd(width)}  ${event.source}${event.subject ? `  ${event.subject}` : ''}`,
    );
  }
  return lines.join('\n');
}
