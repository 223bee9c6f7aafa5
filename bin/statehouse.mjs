#!/usr/bin/env node
// The `statehouse` command (package.json `bin`). The CLI is TypeScript loaded through tsx and
// needs the Node from package.json `engines`. This file only picks that Node and relaunches;
// it never installs anything, since a CLI invocation is no place for a surprise download --
// `npm start` / `npm run statehouse` (scripts/bootstrap.mjs) do that.

import path from 'node:path';
import { localNode, ROOT, requiredNode, run, tsxImport } from '../scripts/bootstrap.mjs';

function die(msg) {
  console.error(`statehouse: ${msg}`);
  process.exit(1);
}

const engines = requiredNode();
let node = process.execPath;
if (!engines.satisfiedBy(process.version)) {
  const local = localNode();
  if (!local || !engines.satisfiedBy(local.version)) {
    die(
      `needs Node >= ${engines.text} but this is ${process.version}. Run \`npm start\` or ` +
        `\`npm run statehouse -- <args>\` once in ${ROOT} to install a suitable Node into ` +
        '.statehouse/node, or install a newer Node yourself.',
    );
  }
  node = local.bin;
}

let tsx;
try {
  tsx = tsxImport();
} catch {
  die(`dependencies are not installed; run \`npm start\` or \`npm ci\` once in ${ROOT}.`);
}

// Spawned rather than loaded in-process so src/cli/main.ts is the entry script (process.argv[1])
// exactly as under `npm start`. The cwd stays the caller's, so relative paths in args work.
const main = path.join(ROOT, 'src', 'cli', 'main.ts');
const argv = ['--import', tsx, main, ...process.argv.slice(2)];
process.exit(await run(node, argv, node, { cwd: process.cwd() }));
