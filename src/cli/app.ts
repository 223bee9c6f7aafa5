import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { UsageError } from '../errors/index.ts';
import type { Handler } from '../jobs/index.ts';
import type { Workflow } from '../workflows/index.ts';

export interface App {
  workflows: readonly Workflow[];
  handlers: readonly Handler<never, unknown>[];
}

/** The module that lists the workflows and handlers to serve; by default the shipped demo. */
export async function loadApp(path: string | undefined): Promise<App> {
  if (!path) {
    const [{ workflows }, { handlers }] = await Promise.all([
      import('../../machines/index.ts'),
      import('../../handlers/index.ts'),
    ]);
    return { workflows, handlers: handlers as unknown as Handler<never, unknown>[] };
  }
  const module = (await import(pathToFileURL(resolve(path)).href)) as Partial<App>;
  if (!Array.isArray(module.workflows) || !Array.isArray(module.handlers)) {
    throw new UsageError(`${path} must export \`workflows\` and \`handlers\` arrays`);
  }
  return { workflows: module.workflows, handlers: module.handlers };
}
