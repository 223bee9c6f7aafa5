// The scenarios `npm run bench` knows, in the order it runs them. A new scenario is a file
// in this folder exporting a Scenario, added here.
import { actors } from './actors.ts';
import { e2e } from './e2e.ts';
import { ingest } from './ingest.ts';
import { jobs } from './jobs.ts';
import { scale } from './scale.ts';
import type { Scenario } from './types.ts';

export const scenarios: readonly Scenario[] = [ingest, jobs, actors, e2e, scale];

export type { Figures, ResultRow, RunOptions, Scenario, ScenarioContext, ScenarioResult } from './types.ts';
