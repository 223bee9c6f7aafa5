// Entry point behind every `npm` script (start, test, lint, bench, statehouse).
//
// `npm` runs this with whatever Node is on PATH, which may be older than package.json `engines`
// asks for. So this file is deliberately plain JavaScript that runs on Node 18+ with nothing
// installed: it finds or fetches a suitable Node, makes sure node_modules matches the lockfile,
// then hands the real work to that Node.
//
// Usage: node scripts/bootstrap.mjs <start|cli|test|lint|bench> [args...]
// bin/statehouse.mjs imports the helpers exported below.

import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, realpathSync, renameSync, rmSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { constants } from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

// Node fetched from the npm registry when the system one is too old. The registry is the one
// download source we can rely on being reachable wherever `npm ci` works.
const LOCAL_NODE_VERSION = '24.22.3';
const LOCAL_NODE_DIR = path.join(ROOT, '.statehouse', 'node');
// npm publishes Windows builds as node-win-*, not node-win32-*.
const LOCAL_NODE_PKG = `node-${process.platform === 'win32' ? 'win' : process.platform}-${process.arch}`;

const log = (msg) => console.error(`statehouse: ${msg}`);

function fail(msg, code = 1) {
  console.error(msg);
  process.exit(code);
}

// --- Node selection -----------------------------------------------------------------------------

const parseVersion = (v) => String(v).replace(/^v/, '').split('.').map(Number);

function atLeast(version, min) {
  const a = parseVersion(version);
  for (let i = 0; i < 3; i++) {
    if ((a[i] || 0) !== min[i]) return (a[i] || 0) > min[i];
  }
  return true;
}

/** The minimum version from package.json `engines.node`; only the `>=X.Y.Z` form is supported. */
export function requiredNode() {
  const range = JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8')).engines?.node ?? '';
  const m = /^\s*>=\s*v?(\d+)(?:\.(\d+))?(?:\.(\d+))?\s*$/.exec(range);
  if (!m)
    fail(`statehouse: package.json engines.node must look like ">=X.Y.Z", not ${JSON.stringify(range)}`);
  const min = [Number(m[1]), Number(m[2] || 0), Number(m[3] || 0)];
  return { min, text: min.join('.'), satisfiedBy: (version) => atLeast(version, min) };
}

/** Path and version of the project-local Node, or undefined when it is not (fully) installed. */
export function localNode(dir = LOCAL_NODE_DIR) {
  const pkgDir = path.join(dir, 'node_modules', LOCAL_NODE_PKG);
  try {
    const pkg = JSON.parse(readFileSync(path.join(pkgDir, 'package.json'), 'utf8'));
    // The package's own `bin` field says where the binary is (bin/node on Linux and macOS).
    const rel = typeof pkg.bin === 'string' ? pkg.bin : (pkg.bin?.node ?? 'bin/node');
    const bin = path.join(pkgDir, rel);
    return existsSync(bin) ? { bin, version: pkg.version } : undefined;
  } catch {
    return undefined;
  }
}

async function installLocalNode(engines) {
  log(
    `Node ${process.version} is older than ${engines.text}; installing Node ${LOCAL_NODE_VERSION} into ` +
      '.statehouse/node (one-time download, this takes a while)...',
  );
  // Install next to the final place and rename once verified, so an interrupted download never
  // leaves a half-written binary that later runs would trust.
  const tmp = `${LOCAL_NODE_DIR}.tmp-${process.pid}`;
  rmSync(tmp, { recursive: true, force: true });
  mkdirSync(tmp, { recursive: true });
  try {
    const spec = `${LOCAL_NODE_PKG}@${LOCAL_NODE_VERSION}`;
    const quiet = ['--no-save', '--no-package-lock', '--no-audit', '--no-fund', '--loglevel=error'];
    const code = await runNpm(process.execPath, ['install', ...quiet, '--prefix', tmp, spec]);
    const node = localNode(tmp);
    if (code !== 0 || !node) throw new Error(`npm install ${spec} failed`);
    const probe = spawnSync(node.bin, ['--version'], { encoding: 'utf8' });
    const version = probe.stdout?.trim() ?? '';
    if (probe.status !== 0 || !engines.satisfiedBy(version)) {
      throw new Error(`${node.bin} --version gave ${JSON.stringify(version || String(probe.error))}`);
    }
    rmSync(LOCAL_NODE_DIR, { recursive: true, force: true });
    renameSync(tmp, LOCAL_NODE_DIR);
    return localNode().bin;
  } catch (err) {
    rmSync(tmp, { recursive: true, force: true });
    return fail(
      `statehouse needs Node >= ${engines.text} (this is ${process.version}); install it (e.g. from nodejs.org ` +
        `or your package manager) or make sure the npm registry package ${LOCAL_NODE_PKG}@${LOCAL_NODE_VERSION} ` +
        `can be installed for this platform. (${err.message})`,
    );
  }
}

async function ensureNode() {
  const engines = requiredNode();
  if (engines.satisfiedBy(process.version)) return process.execPath;
  const local = localNode();
  if (local && engines.satisfiedBy(local.version)) return local.bin;
  return installLocalNode(engines);
}

// --- Dependencies -------------------------------------------------------------------------------

const mtime = (file) => (existsSync(file) ? statSync(file).mtimeMs : 0);

// npm rewrites node_modules/.package-lock.json on every install, so it is a cheap "installed at"
// stamp; anything newer in package.json or the lockfile means node_modules may be out of date.
function depsStale() {
  const stamp = mtime(path.join(ROOT, 'node_modules', '.package-lock.json'));
  return stamp === 0 || ['package.json', 'package-lock.json'].some((f) => mtime(path.join(ROOT, f)) > stamp);
}

async function ensureDeps(node) {
  if (!depsStale()) return;
  log('installing dependencies (npm ci)...');
  const code = await runNpm(node, ['ci', '--no-audit', '--no-fund']);
  if (code !== 0) fail(`statehouse: npm ci failed (exit ${code})`, code);
}

/** Runs npm under `node` so install scripts see the same Node the project will run on. */
function runNpm(node, args) {
  // npm's chatter goes to stderr: stdout belongs to the task (`npm run bench -- --json > out`).
  const options = { stdio: ['inherit', 2, 'inherit'] };
  // Under `npm run`, npm_execpath is npm's own CLI script; reuse it rather than whatever is on PATH.
  const cli = process.env.npm_execpath;
  if (cli && /npm-cli\.c?js$/.test(cli)) return run(node, [cli, ...args], node, options);
  return run(process.platform === 'win32' ? 'npm.cmd' : 'npm', args, node, options);
}

// --- Running children ---------------------------------------------------------------------------

let child; // the process currently running, if any
let lastForward = {}; // signal name -> time it was last forwarded

// Linux only: true when we sit in the terminal's foreground process group. Then a Ctrl-C from the
// keyboard has already reached the child directly, and forwarding it would deliver it twice,
// which a "second Ctrl-C = force quit" handler would treat as an impatient user.
function keyboardReachesChild() {
  try {
    const stat = readFileSync('/proc/self/stat', 'utf8');
    const [, , pgrp, , , tpgid] = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return Number(tpgid) > 0 && tpgid === pgrp;
  } catch {
    return false;
  }
}

function onSignal(signal) {
  if (!child) process.exit(128 + constants.signals[signal]);
  if (signal === 'SIGINT' && keyboardReachesChild()) return;
  // `npm run` relays signals to us as well, so one `kill` of npm can arrive here twice.
  const now = Date.now();
  if (now - (lastForward[signal] ?? 0) < 1000) return;
  lastForward[signal] = now;
  child.kill(signal);
}

for (const signal of ['SIGINT', 'SIGTERM']) process.on(signal, onSignal);

// `npm run` relays signals to the `sh -c` it starts us with, and sh dies without passing them on,
// leaving us orphaned. Treat that as a stop request rather than leave e.g. a server running that
// nobody can stop with the npm process they know about. (Only under npm: a user may well start
// this directly with nohup/setsid, where a vanished parent is expected.)
function watchForOrphaning() {
  if (!process.env.npm_lifecycle_event) return;
  const parent = process.ppid;
  const timer = setInterval(() => {
    if (process.ppid === parent) return;
    clearInterval(timer);
    onSignal('SIGTERM');
  }, 500);
  timer.unref();
}

/**
 * Spawns `command args` (stdio inherited, cwd ROOT unless overridden) and resolves to its exit
 * code, 128+n for signal n. `node`'s directory goes first on PATH so `#!/usr/bin/env node`
 * scripts and npm lifecycle scripts pick the same Node as the task.
 */
export function run(command, args, node = command, options = {}) {
  const pathKey = Object.keys(process.env).find((k) => k.toUpperCase() === 'PATH') ?? 'PATH';
  const dirs = [path.dirname(node), path.join(ROOT, 'node_modules', '.bin'), process.env[pathKey]];
  const env = { ...process.env, [pathKey]: dirs.filter(Boolean).join(path.delimiter) };
  // Tools that re-spawn "the current node" look here (npm sets them to the Node that ran npm).
  env.NODE = env.npm_node_execpath = node;
  if (node.startsWith(LOCAL_NODE_DIR + path.sep)) {
    // A user npmrc may point nodedir at the system Node's headers; native addons must be built
    // against the Node that will load them, and the registry package ships its own headers.
    env.npm_config_nodedir = path.resolve(path.dirname(node), '..');
  }
  return new Promise((resolve) => {
    lastForward = {};
    child = spawn(command, args, {
      cwd: ROOT,
      env,
      stdio: 'inherit',
      shell: process.platform === 'win32' && command.endsWith('.cmd'),
      ...options,
    });
    child.on('error', (err) => {
      log(`cannot run ${command}: ${err.message}`);
      child = undefined;
      resolve(127);
    });
    child.on('exit', (code, signal) => {
      child = undefined;
      resolve(signal ? 128 + (constants.signals[signal] ?? 0) : (code ?? 1));
    });
  });
}

/** `--import` value that loads tsx from this project, whatever the cwd. */
export function tsxImport() {
  return pathToFileURL(createRequire(path.join(ROOT, 'package.json')).resolve('tsx')).href;
}

// --- Tasks --------------------------------------------------------------------------------------

const biome = (args) => [
  'node_modules/@biomejs/biome/bin/biome',
  'check',
  // `npm run lint -- --write` should still check the whole tree; explicit paths replace it.
  ...(args.some((a) => !a.startsWith('-')) ? [] : ['.']),
  ...args,
];

// Each task is a list of [header, argv-after-node]; a header is printed only for multi-step tasks.
const TASKS = {
  start: (args) => [[null, ['--import', tsxImport(), 'src/cli/main.ts', 'start', ...args]]],
  cli: (args) => [[null, ['--import', tsxImport(), 'src/cli/main.ts', ...args]]],
  bench: (args) => [[null, ['--import', tsxImport(), 'bench/main.ts', ...args]]],
  lint: (args) => [[null, biome(args)]],
  test: (args) => [
    ['type check', ['node_modules/typescript/bin/tsc', '--noEmit', '-p', 'tsconfig.json']],
    ['lint', biome([])],
    ['tests', ['node_modules/vitest/vitest.mjs', 'run', ...args]],
  ],
};

async function main([task, ...args]) {
  if (!Object.hasOwn(TASKS, task ?? '')) {
    fail(`usage: node scripts/bootstrap.mjs <${Object.keys(TASKS).join('|')}> [args...]`, 2);
  }
  watchForOrphaning();
  const node = await ensureNode();
  await ensureDeps(node);
  for (const [header, argv] of TASKS[task](args)) {
    if (header) console.error(`▶ ${header}`);
    const code = await run(node, argv);
    if (code !== 0) process.exit(code);
  }
  process.exit(0);
}

// Only act when run directly; bin/statehouse.mjs imports the helpers above.
const self = realpathSync(fileURLToPath(import.meta.url));
if (process.argv[1] && realpathSync(process.argv[1]) === self) await main(process.argv.slice(2));
