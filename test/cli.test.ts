import { spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestContext, type TestContext, waitFor } from './helpers/context.ts';
import { orderPlaced } from './helpers/orders.ts';

const MAIN = fileURLToPath(new URL('../src/cli/main.ts', import.meta.url));

interface CliResult {
  status: number | null;
  stdout: string;
  stderr: string;
}

/** Runs the CLI with `input` on its stdin; killed after 30 s, which its result then shows. */
function runCli(env: NodeJS.ProcessEnv, args: readonly string[], input?: string): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', MAIN, ...args], { env });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
      stdout += chunk;
    });
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => {
      stderr += chunk;
    });
    const timer = setTimeout(() => {
      stderr += `\n[killed after 30 s: statehouse ${args.join(' ')}]`;
      child.kill('SIGKILL');
    }, 30_000);
    child.on('error', reject);
    child.on('close', (status) => {
      clearTimeout(timer);
      resolve({ status, stdout, stderr });
    });
    // A command that exits before reading its input must not fail the test with EPIPE.
    child.stdin.on('error', () => {});
    child.stdin.end(input);
  });
}

describe('statehouse CLI', () => {
  let t: TestContext;
  let env: NodeJS.ProcessEnv;
  beforeAll(async () => {
    t = await createTestContext();
    env = t.processEnv();
  });
  afterAll(() => t.cleanup());

  // Asynchronous: an engine a test starts runs in this process, and a synchronous spawn
  // would freeze it mid-transaction, holding row locks the command then waits for.
  const cli = (...args: string[]) => runCli(env, args);

  it('has --help on every command', async () => {
    for (const command of [
      [],
      ['start'],
      ['migrate'],
      ['entity'],
      ['entities'],
      ['publish'],
      ['jobs'],
      ['jobs', 'retry'],
      ['quarantine'],
    ]) {
      const result = await cli(...command, '--help');
      expect(result.status, command.join(' ')).toBe(0);
      expect(result.stdout).toContain('Usage: statehouse');
    }
  });

  it('migrate says the schema is up to date on a migrated database', async () => {
    const result = await cli('migrate');
    expect(result.status).toBe(0);
    expect(result.stdout).toMatch(/schema "statehouse" is up to date at \d+/);
  });

  it('start runs the demo until SIGINT: a published order reaches its final state, shown by entity --json', async () => {
    const engine = spawn(process.execPath, ['--import', 'tsx', MAIN, 'start'], {
      env,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    engine.stdout.on('data', (chunk: Buffer) => {
      output += chunk.toString();
    });
    const exited = new Promise<number | null>((resolve) => engine.once('exit', (code) => resolve(code)));
    await waitFor('the start banner', async () => output.includes('Ctrl-C stops the engine'));
    expect(output).toContain(`subjects  ${t.subject('orders.*.>')}`);

    const published = await cli(
      'publish',
      t.subject('orders.cli-1.placed'),
      JSON.stringify(orderPlaced()),
      '--id',
      'cli-1',
    );
    expect(published.status, published.stderr).toBe(0);
    expect(published.stdout).toMatch(/published .* as message cli-1 → stream .* seq \d+/);

    const entity = await waitFor('cli-1 shipped', async () => {
      const shown = await cli('entity', 'cli-1', '--json');
      const parsed = shown.status === 0 ? JSON.parse(shown.stdout) : undefined;
      return parsed?.state === 'shipped' ? parsed : undefined;
    });
    expect(entity).toMatchObject({ machine: 'order', entityId: 'cli-1', status: 'done', version: 4 });
    expect(entity.history.map((e: { type: string }) => e.type)).toEqual([
      'order.placed',
      'reserveStock.done',
      'chargePayment.done',
      'shipOrder.done',
    ]);

    const listed = await cli('entities', '--machine', 'order', '--status', 'done');
    expect(listed.stdout).toMatch(/order cli-1 {2}done {2}shipped/);
    expect((await cli('entities', '--status', 'sleeping')).stderr).toContain('--status');
    const human = await cli('entity', 'cli-1');
    expect(human.stdout).toMatch(/status\s+done/);
    expect(human.stdout).toMatch(/state\s+shipped/);

    engine.kill('SIGINT');
    expect(await exited).toBe(0);
  });

  it('says what to fix when an entity does not exist or a payload is not JSON', async () => {
    const wrong = await cli('entity', 'nobody', 'explode');
    expect(wrong.stderr).toContain('unknown entity action "explode"; use show or resume');
    expect((await cli('entities', 'explode')).stderr).toContain(
      'unknown entities action "explode"; use list or resume',
    );
    const unnamed = await cli('entities', 'resume');
    expect(unnamed.status).toBe(1);
    expect(unnamed.stderr).toContain('entities resume needs --machine: the machine whose fix is deployed');
    expect((await cli('entities', 'resume', '--machine', 'order')).stdout).toContain(
      'no failed entities of order',
    );
    expect((await cli('entities', 'resume', '--machine', 'order', '--limit', '10')).stderr).toContain(
      'entities resume takes --machine only',
    );
    const missing = await cli('entity', 'nobody');
    expect(missing.status).toBe(1);
    expect(missing.stderr).toContain('no entity "nobody" [ENTITY_NOT_FOUND]');
    const bad = await cli('publish', t.subject('orders.x.placed'), '{oops');
    expect(bad.status).toBe(1);
    expect(bad.stderr).toContain('the payload is not JSON');
  });

  it('lists, shows, re-drives and drops quarantined messages', async () => {
    await t.pool.query(
      `insert into statehouse.quarantine (reason_code, reason, subject, headers, payload, message_id)
       values ('schema-violation', 'data of "order.placed" does not match', $1, '{}', $2, 'q-cli-1'),
              ('malformed-json', 'payload is not UTF-8 JSON', $1, '{}', 'nope', 'q-cli-2')`,
      [t.subject('orders.qc-1.placed'), JSON.stringify(orderPlaced())],
    );
    const list = await cli('quarantine', 'list');
    expect(list.status, list.stderr).toBe(0);
    expect(list.stdout).toMatch(/schema-violation\s+.*orders\.qc-1\.placed/);
    const [first, second] = [...list.stdout.matchAll(/^\s*(\d+)\s+held/gm)].map((m) => m[1]!);
    expect((await cli('quarantine', 'show', first!)).stdout).toContain('reason   schema-violation');
    // The payload is valid for the demo workflow as it is now: re-driving stores it.
    // Each message is its own transaction: a later one that fails leaves the first stored,
    // and the output says so.
    const redrive = await cli('quarantine', 'redrive', first!, '999999');
    expect(redrive.stdout).toContain(`${first}: stored as an event of order qc-1`);
    expect(redrive.stderr).toContain('no quarantined message 999999');
    expect(redrive.status).toBe(1);
    const stillBad = await cli('quarantine', 'redrive', second!);
    expect(stillBad.status).toBe(1);
    expect(stillBad.stdout).toContain('still invalid, kept: malformed-json');
    // A corrected payload that is still wrong keeps it held, saying so.
    const dir = mkdtempSync(join(tmpdir(), 'statehouse-cli-'));
    writeFileSync(join(dir, 'wrong.json'), JSON.stringify({ type: 'order.placed', data: { nope: true } }));
    const wrongFix = await cli('quarantine', 'redrive', second!, '--payload', join(dir, 'wrong.json'));
    expect(wrongFix.status).toBe(1);
    expect(wrongFix.stdout).toContain('still invalid, kept: schema-violation: the corrected payload:');
    expect(
      (await cli('quarantine', 'redrive', first!, second!, '--payload', join(dir, 'wrong.json'))).stderr,
    ).toContain('--payload corrects one message: name exactly one id, without --all');
    expect(
      (await cli('quarantine', 'redrive', second!, '--payload', join(dir, 'missing.json'))).stderr,
    ).toContain(`cannot read the corrected payload from "${join(dir, 'missing.json')}"`);
    // Corrected from stdin: stored under the message's own subject; the held bytes stay on record.
    const fixed = await runCli(
      env,
      ['quarantine', 'redrive', second!, '--payload', '-'],
      JSON.stringify(orderPlaced()),
    );
    expect(fixed.stdout, fixed.stderr).toContain(`${second}: stored as an event of order qc-1`);
    const { rows } = await t.pool.query<{ version: number; data: { customerId: string } }>(
      "select version, data from statehouse.events where entity_id = 'qc-1' order by version",
    );
    expect(rows.map((r) => [r.version, r.data.customerId])).toEqual([
      [1, orderPlaced().data.customerId],
      [2, orderPlaced().data.customerId],
    ]);
    const held = await t.pool.query<{ payload: Buffer; status: string; reason: string }>(
      "select payload, status, reason from statehouse.quarantine where message_id = 'q-cli-2'",
    );
    expect(held.rows[0]?.payload.toString()).toBe('nope');
    expect(held.rows[0]?.status).toBe('redriven');
    expect(held.rows[0]?.reason).toContain('(re-driven with a corrected payload)');
    expect((await cli('quarantine', 'list')).stdout).toContain('no quarantined messages');
    expect((await cli('quarantine', 'redrive')).stderr).toContain('name the ids to re-drive, or pass --all');

    // --all: every held message, each said as it commits.
    await t.pool.query(
      `insert into statehouse.quarantine (reason_code, reason, subject, headers, payload, message_id)
       values ('schema-violation', 'data of "order.placed" does not match', $1, '{}', $2, 'q-cli-3'),
              ('malformed-json', 'payload is not UTF-8 JSON', $1, '{}', 'nope', 'q-cli-4')`,
      [t.subject('orders.qc-3.placed'), JSON.stringify(orderPlaced())],
    );
    const all = await cli('quarantine', 'redrive', '--all');
    expect(all.stdout).toMatch(/^\d+: stored as an event of order qc-3$/m);
    expect(all.stdout).toMatch(/^\d+: still invalid, kept: malformed-json/m);
    expect(all.status).toBe(1);
    expect((await cli('quarantine', 'list')).stdout).toMatch(/malformed-json/);
  });

  it('shows an order needing attention and its failed compensation, and retries it with a reason kept in the history', async () => {
    await t.startEngine();
    await t.publish(
      t.subject('orders.cli-2.placed'),
      orderPlaced({ address: 'nowhere', paymentMethod: 'card_refund_blocked' }),
    );
    await waitFor('cli-2 to need attention', async () =>
      (await cli('entities', '--status', 'needs-attention')).stdout.includes('order cli-2  needs-attention'),
    );
    const shown = (await cli('entity', 'cli-2')).stdout;
    expect(shown).toContain('saga (needs-attention)');
    expect(shown).toMatch(/reserveStock\s+done/);
    expect(shown).toMatch(/chargePayment\s+compensation-failed\s+\S+\s+the processor refuses refunds/);
    const hinted =
      /chargePayment's undo failed for good: fix the cause, then `statehouse jobs retry (\S+)`/.exec(
        shown,
      )?.[1];
    // pg-boss marks the job failed just after the transaction that recorded its failure.
    const failed = await waitFor('the failed compensation job', async () => {
      const listed = await cli(
        'jobs',
        'list',
        '--entity',
        'cli-2',
        '--kind',
        'compensate',
        '--state',
        'failed',
      );
      return listed.stdout.includes('chargePayment') ? listed : undefined;
    });
    expect(failed.status, failed.stderr).toBe(0);
    const [, id] = /^(\S+)\s.*failed\s+chargePayment \(compensate\)\s+order cli-2/m.exec(failed.stdout) ?? [];
    expect(id, failed.stdout).toBeDefined();
    // The failed shipment is a run, not a compensation: --kind leaves it out.
    expect(failed.stdout).not.toContain('shipOrder');
    expect((await cli('jobs', 'list', '--entity', 'cli-2', '--state', 'failed')).stdout).toContain(
      'shipOrder',
    );
    expect(hinted).toBe(id);
    expect((await cli('jobs', 'list', '--entity', 'cli-2', '--state', 'dead', '--json')).stdout).toContain(
      '"sourceId"',
    );

    // A command does not wait for ever on a row a stuck transaction holds: it says so.
    const holder = await t.pool.connect();
    try {
      await holder.query('begin');
      await holder.query("select 1 from statehouse.entities where entity_id = 'cli-2' for update");
      const busy = await runCli({ ...env, STATEHOUSE_COMMAND_LOCK_TIMEOUT_MS: '200' }, [
        'jobs',
        'retry',
        id!,
      ]);
      expect(busy.status, busy.stderr).toBe(1);
      expect(busy.stderr).toMatch(
        /another session held a lock this command needs for 200 ms.*idle in transaction.*\[BUSY\]/,
      );
    } finally {
      await holder.query('rollback');
      holder.release();
    }

    const retried = await cli('jobs', 'retry', id!, '--reason', 'refunded by hand');
    expect(retried.status, retried.stderr).toBe(0);
    expect(retried.stdout).toMatch(/retried chargePayment for order cli-2: job \S+ runs in place of/);
    const entity = await waitFor('the retry to fail again', async () => {
      const shown = JSON.parse((await cli('entity', 'cli-2', '--json')).stdout);
      const types = shown.history.map((e: { type: string }) => e.type);
      return types.filter((type: string) => type === 'saga.compensationFailed').length === 2
        ? shown
        : undefined;
    });
    expect(entity.status).toBe('needs-attention');
    const retry = entity.history.find((e: { type: string }) => e.type === 'statehouse.job.retried');
    expect(retry).toMatchObject({ source: 'operator', data: { jobId: id, reason: 'refunded by hand' } });

    expect((await cli('jobs', 'retry', id!)).stderr).toMatch(
      /was already run again as job \S+ \[JOB_STATE_INVALID\]/,
    );
    expect((await cli('jobs', 'cancel', 'job-7')).stderr).toContain('"job-7" is not a job id');
    expect((await cli('jobs', 'list', '--state', 'stuck')).stderr).toContain('--state');
  });

  it('names the variable when configuration is wrong', async () => {
    const result = await runCli({ ...env, STATEHOUSE_DB_POOL_SIZE: 'many' }, ['migrate']);
    expect(result.status).toBe(1);
    expect(result.stderr).toContain('STATEHOUSE_DB_POOL_SIZE');
    expect(result.stderr).toContain('[CONFIG_INVALID]');
  });
});
