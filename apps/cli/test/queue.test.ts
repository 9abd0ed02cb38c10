import { copyFileSync, mkdtempSync, readFileSync, readdirSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';

interface JsonRow {
  readonly method: string;
  readonly budget: number | null;
  readonly perplexity: number;
  readonly seconds: number;
}
import { QUEUE_NAME, parseQueueUrl, redactCredentials } from '@layerquant/queue';
import { Queue } from 'bullmq';
import { createHash } from 'node:crypto';
import { tinyConfig, writeModelDirectory } from '@layerquant/runtime/testing';
import { haveRedis, startRedis, type TestRedis } from './redis-server.js';
import { bin } from './run-cli.js';
import { writeWordText } from './word-text.js';
import { start, startWith, stopAll, type Running } from './cli-process.js';
import { tinyModel, type TinyModel } from './tiny-model.js';

const STALL = '2';
/** The grid of the worker tests, on a tiny random model with its own text and statistics (the shipped model made this suite 149 s of CI). */
let m: TinyModel;
const grid = () => ['experiment', m.dir, '--stats', m.stats, '--methods', 'hqq,sensiboost-2-1', '--budgets', '3.25', ...m.evaluation, '--json'];
/** The fault tests' grid: fp and HQQ uniform at 3.25 (the first two cells of `grid`, same keys). */
const small = () => ['experiment', m.dir, '--stats', m.stats, '--methods', 'hqq', '--budgets', '3.25', ...m.evaluation, '--json'];
/** A worker serving the tiny model, unless `extra` names its models. */
const worker = (redis: TestRedis, ...extra: string[]) =>
  start('worker', '--queue', redis.url, '--stall-interval', STALL, ...(extra.some((a) => a.startsWith('--model')) ? [] : ['--model', m.dir]), ...extra);
/**
 * A worker that holds each computed job 1.5 s before it reports it (the test hook LAYERQUANT_TEST_CELL_DELAY_MS): killed
 * once it says "computing", it is still mid-job however fast the tiny model's cells are.
 */
const HELD = { LAYERQUANT_TEST_CELL_DELAY_MS: '1500' };
const heldWorker = (redis: TestRedis) => startWith(HELD, 'worker', '--queue', redis.url, '--stall-interval', STALL, '--model', m.dir);
const withoutTime = (rows: readonly JsonRow[]) => rows.map(({ seconds: _, ...r }) => r);
/** The rows of `experiment --json` (schema/output.schema.json: `perplexity`, `sizes`, ...). */
const rowsOf = (stdout: string) => (JSON.parse(stdout) as { rows: JsonRow[] }).rows;

/** How many times each cell key was computed to the end, over the logs of every worker. */
function computedCounts(...workers: Running[]): Map<string, number> {
  const counts = new Map<string, number>();
  for (const w of workers) for (const m of w.output.stderr.matchAll(/computed cell .* \(([0-9a-f]{16})\)/g)) counts.set(m[1]!, (counts.get(m[1]!) ?? 0) + 1);
  return counts;
}

const cellsIn = (out: string) => {
  try {
    return Object.keys((JSON.parse(readFileSync(join(out, 'results.json'), 'utf8')) as { cells: object }).cells).length;
  } catch {
    return 0;
  }
};

async function until(check: () => boolean, timeoutMs = 60_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > end) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 20));
  }
}

afterEach(stopAll);

/** A tiny random model of 4 layers and a text of its words (one calibration block of 512 tokens, and evaluation). */
async function tinyModelWithText(prefix: string, textName: string): Promise<{ model: string; text: string }> {
  const scratch = mkdtempSync(join(tmpdir(), prefix));
  const model = join(scratch, 'tiny');
  const text = join(scratch, textName);
  await writeModelDirectory(model, tinyConfig({ hiddenSize: 64, intermediateSize: 128, headDim: 16, numLayers: 4, maxPositionEmbeddings: 512 }), { seed: 5 });
  writeWordText(text, 3000);
  return { model, text };
}

describe('redis URLs', () => {
  it('parses host, port, db and credentials, and never shows the password', () => {
    const a = parseQueueUrl('redis://user:p%40ss@127.0.0.1:6390/3');
    expect(a.connection).toMatchObject({ host: '127.0.0.1', port: 6390, db: 3, username: 'user', password: 'p@ss' });
    expect(a.redacted).toBe('redis://***@127.0.0.1:6390/3');
    expect(parseQueueUrl('redis://localhost').connection).toMatchObject({ port: 6379, db: 0 });
    expect(redactCredentials('failed: redis://:hunter2@h:1/0 said hunter2', parseQueueUrl('redis://:hunter2@h:1/0'))).toBe('failed: redis://***@h:1/0 said ***');
    expect(() => parseQueueUrl('http://:hunter2@h:1/0')).toThrow(/not a redis:\/\/ or rediss:\/\/ URL/);
    expect(() => parseQueueUrl('http://:hunter2@h:1/0')).not.toThrow(/hunter2/);
    expect(() => parseQueueUrl('redis://h:1/x')).toThrow(/database "x"/);
  });
});

describe.skipIf(!haveRedis)('experiment --queue with workers (real redis-server on 127.0.0.1)', () => {
  let reference: JsonRow[];
  const smallReference = () => reference.filter((r) => r.method === 'fp' || r.method === 'hqq');
  beforeAll(async () => {
    m = await tinyModel();
    const out = mkdtempSync(join(tmpdir(), 'queue-reference-'));
    const result = await bin(...grid(), '--out', out);
    expect(result.code).toBe(0);
    reference = rowsOf(result.stdout);
    expect(reference.map((r) => r.method)).toEqual(['fp', 'hqq', 'sensiboost-2-1']);
  }, 120_000);

  it('two workers give the in-process results; every cell is computed once; the password appears nowhere', async () => {
    const secret = 'pw-Zq81-secret';
    const redis = await startRedis({ password: secret });
    try {
      const workers = [worker(redis), worker(redis)];
      const out = mkdtempSync(join(tmpdir(), 'queue-two-'));
      const coordinator = start(...grid(), '--out', out, '--queue', redis.url);
      expect((await coordinator.exited).code).toBe(0);
      expect(withoutTime(rowsOf(coordinator.output.stdout))).toEqual(withoutTime(reference));
      const counts = computedCounts(...workers);
      expect([...counts.values()]).toEqual([1, 1, 1]);
      expect(coordinator.output.stderr).toMatch(/queue: cells 3\/3 done, 0 running, 0 failed/);
      // Credentials: not in any log, output or file written.
      const files = readdirSync(out, { recursive: true, withFileTypes: true }).filter((d) => d.isFile()).map((d) => readFileSync(join(d.parentPath, d.name), 'utf8'));
      for (const text of [coordinator.output.stdout, coordinator.output.stderr, ...workers.flatMap((w) => [w.output.stdout, w.output.stderr]), ...files]) expect(text).not.toContain(secret);
      expect(coordinator.output.stderr).toContain(`redis://***@127.0.0.1:${redis.port}/0`);
      // A wrong password: a one-line typed error, without the password.
      const wrong = await bin('experiment', m.dir, '--stats', m.stats, '--methods', 'hqq', '--budgets', '3.25', '--no-fp', '--out', mkdtempSync(join(tmpdir(), 'queue-wrong-')), '--queue', `redis://:not-${secret}@127.0.0.1:${redis.port}/0`);
      expect(wrong.code).toBe(1);
      expect(wrong.stderr).toMatch(/^layerquant: error: cannot reach the queue at redis:\/\/\*\*\*@127\.0\.0\.1:\d+\/0 \(.*(WRONGPASS|invalid).*\)/m);
      expect(wrong.stderr).not.toContain(secret);
    } finally {
      await redis.stop();
    }
  }, 120_000);

  it('experiment --kld on the queue records the KLD the in-process run records (the worker computes the same base from its model)', async () => {
    const redis = await startRedis();
    const previous = process.env.XDG_CACHE_HOME;
    // The worker's base cache (inherited by the child), never the user's.
    process.env.XDG_CACHE_HOME = mkdtempSync(join(tmpdir(), 'queue-kld-cache-'));
    try {
      const kldGrid = ['experiment', m.dir, '--stats', m.stats, '--methods', 'hqq', '--budgets', '3.25', ...m.evaluation, '--no-fp', '--kld', '--json'];
      const local = await bin(...kldGrid, '--out', mkdtempSync(join(tmpdir(), 'queue-kld-local-')));
      expect(local.code, local.stderr).toBe(0);
      const w = worker(redis);
      const coordinator = start(...kldGrid, '--out', mkdtempSync(join(tmpdir(), 'queue-kld-')), '--queue', redis.url);
      expect((await coordinator.exited).code, `${coordinator.output.stderr}\n${coordinator.output.stdout}\nworker: ${w.output.stderr}`).toBe(0);
      type KldRow = JsonRow & { kld?: { mean: number; p999: number; sameTop: number } };
      const queued = rowsOf(coordinator.output.stdout) as KldRow[];
      const inProcess = rowsOf(local.stdout) as KldRow[];
      expect(queued.map((r) => r.kld)).toEqual(inProcess.map((r) => r.kld));
      expect(queued[0]!.kld!.mean).toBeGreaterThan(0);
      expect(readdirSync(join(process.env.XDG_CACHE_HOME, 'layerquant', 'kld-base'))).toHaveLength(1);
      expect(computedCounts(w).size).toBe(1);
    } finally {
      if (previous === undefined) delete process.env.XDG_CACHE_HOME;
      else process.env.XDG_CACHE_HOME = previous;
      await redis.stop();
    }
  }, 180_000);

  it('a worker SIGKILLed mid-cell: another takes its job after the stall interval, results identical, nothing computed twice', async () => {
    const redis = await startRedis();
    try {
      const a = heldWorker(redis);
      const b = worker(redis);
      const out = mkdtempSync(join(tmpdir(), 'queue-kill-'));
      const coordinator = start(...small(), '--out', out, '--queue', redis.url);
      await a.waitFor(/computing cell/);
      a.child.kill('SIGKILL');
      await a.exited;
      const killedKey = /computing cell .* \(([0-9a-f]{16})\)/.exec(a.output.stderr)![1]!;
      expect((await coordinator.exited).code).toBe(0);
      expect(withoutTime(rowsOf(coordinator.output.stdout))).toEqual(withoutTime(smallReference()));
      const counts = computedCounts(a, b);
      expect(counts.size).toBe(2);
      expect([...counts.values()].every((n) => n === 1)).toBe(true);
      expect(b.output.stderr).toMatch(new RegExp(`computed cell .* \\(${killedKey}\\)`));
    } finally {
      await redis.stop();
    }
  }, 120_000);

  it('the coordinator killed mid-grid and started again resumes without recomputing finished cells', async () => {
    const redis = await startRedis();
    try {
      const w = worker(redis);
      const out = mkdtempSync(join(tmpdir(), 'queue-restart-'));
      // Each finished cell held 1.5 s before it is recorded: the kill comes while the second is in flight.
      const first = startWith(HELD, ...small(), '--out', out, '--queue', redis.url);
      await until(() => cellsIn(out) >= 1);
      first.child.kill('SIGKILL');
      await first.exited;
      const finished = cellsIn(out);
      expect(finished).toBeLessThan(2);
      const second = start(...small(), '--out', out, '--queue', redis.url);
      expect((await second.exited).code).toBe(0);
      expect(second.output.stderr).toMatch(new RegExp(`reusing ${finished} of 2 cells`));
      expect(withoutTime(rowsOf(second.output.stdout))).toEqual(withoutTime(smallReference()));
      expect([...computedCounts(w).values()]).toEqual([1, 1]);
      expect(readdirSync(out).sort()).toEqual(['results.csv', 'results.json', 'results.md']);
    } finally {
      await redis.stop();
    }
  }, 120_000);

  it('Redis restarted mid-run without persistence: the grid completes, identical, finished cells kept and not recomputed', async () => {
    // Seven cells: a cell takes about 0.4 s here and the coordinator polls every 0.5 s, so with two cells the second
    // could finish before the restart (nothing would be lost); with seven, some are queued or running when it comes.
    const wide = ['experiment', m.dir, '--stats', m.stats, '--methods', 'hqq,sensiboost-2-1', '--budgets', '2.25,3.25,4.25', ...m.evaluation, '--json'];
    const inProcess = await bin(...wide, '--out', mkdtempSync(join(tmpdir(), 'queue-redis-restart-reference-')));
    expect(inProcess.code).toBe(0);
    const redis = await startRedis();
    try {
      const w = worker(redis);
      const out = mkdtempSync(join(tmpdir(), 'queue-redis-restart-'));
      const coordinator = start(...wide, '--out', out, '--queue', redis.url);
      await until(() => cellsIn(out) >= 1);
      const before = Object.keys((JSON.parse(readFileSync(join(out, 'results.json'), 'utf8')) as { cells: object }).cells);
      await redis.restart();
      const result = await coordinator.exited;
      expect(result.code, coordinator.output.stderr).toBe(0);
      expect(coordinator.output.stderr).toMatch(/not in Redis \(restarted without persistence\?\); publishing and adding them again/);
      expect(withoutTime(rowsOf(coordinator.output.stdout))).toEqual(withoutTime(rowsOf(inProcess.stdout)));
      const counts = computedCounts(w);
      for (const key of before) expect(counts.get(key)).toBe(1);
      expect(statSync(join(out, 'results.json')).size).toBeGreaterThan(0);
    } finally {
      await redis.stop();
    }
  }, 120_000);

  it('a worker with another model refuses every job: each cell is reported failed with its error, exit 1; a rerun with the right worker retries them', async () => {
    const redis = await startRedis();
    try {
      // Another model: the same one with a different tokenizer_config.json (weights linked, not copied).
      const other = mkdtempSync(join(tmpdir(), 'other-model-'));
      for (const name of readdirSync(m.dir)) {
        if (name.endsWith('.safetensors')) symlinkSync(join(m.dir, name), join(other, name));
        else copyFileSync(join(m.dir, name), join(other, name));
      }
      writeFileSync(join(other, 'tokenizer_config.json'), `${readFileSync(join(other, 'tokenizer_config.json'), 'utf8')} `);
      const wrong = worker(redis, '--model', other);
      const out = mkdtempSync(join(tmpdir(), 'queue-mismatch-'));
      const args = ['experiment', m.dir, '--stats', m.stats, '--methods', 'hqq', '--budgets', '3.25', ...m.evaluation, '--out', out, '--queue', redis.url, '--attempts', '2', '--json'];
      const failed = start(...args);
      expect((await failed.exited).code).toBe(1);
      expect(failed.output.stderr).toMatch(/^layerquant: error: 2 job\(s\) failed after every attempt: .*is not one this worker serves \(--model .*other-model-\w+ \(content hash [0-9a-f]{16}\)\), and no --model directory has the job's content hash [0-9a-f]{16}; nothing of that directory was read/m);
      expect(failed.output.stderr).toMatch(/queue: hqq @ 3\.25 failed after 2 attempt\(s\)/);
      expect(failed.output.stderr).toMatch(/queue: fp failed after 2 attempt\(s\)/);
      wrong.child.kill('SIGTERM');
      await wrong.exited;
      const right = worker(redis);
      const again = start(...args);
      expect((await again.exited).code, again.output.stderr).toBe(0);
      expect(again.output.stderr).toMatch(/retrying hqq @ 3\.25, which failed in an earlier run/);
      expect(withoutTime(rowsOf(again.output.stdout))).toEqual(withoutTime(smallReference()));
      expect([...computedCounts(right).values()]).toEqual([1, 1]);
    } finally {
      await redis.stop();
    }
  }, 120_000);

  it('a --plugin allocator with --quantizer rtn runs on workers started with the same --plugin; a worker without it fails the cell naming the plug-in', async () => {
    // A self-contained allocator module: every matrix at the ladder's first config (b2g128 on the paper's ladder).
    const module = join(mkdtempSync(join(tmpdir(), 'queue-plugin-')), 'first-config.mjs');
    writeFileSync(
      module,
      `export default { allocators: [{ id: 'first-config', description: 'every matrix at the first config of the ladder', budget: 'any',
  tablesNeeded: () => ['fnorm'],
  allocate(stats, options, context) {
    const config = (context.configs ?? [{ bits: 2, groupSize: 128, axis: 1, roundZero: false }])[0];
    const seen = new Map();
    for (const r of stats.fnorm.rows) seen.set(r.layer + '.' + r.module, { key: r.layer + '.' + r.module, layer: r.layer, module: r.module, params: r.params, config });
    const matrices = [...seen.values()];
    const params = matrices.reduce((s, m) => s + m.params, 0);
    const bits = matrices.reduce((s, m) => s + m.params * (config.bits + 16 / config.groupSize + 32 / (config.groupSize * 128)), 0);
    return { method: 'first-config', options, budget: context.budget, matrices, totals: { params, bpp: bits / params, memoryMB: bits / 8 / 2 ** 20 } };
  } }] };\n`,
    );
    const args = ['experiment', m.dir, '--stats', m.stats, '--methods', 'first-config', '--budgets', '8', '--no-fp', '--quantizer', 'rtn', ...m.evaluation, '--json', '--plugin', module];
    const local = await bin(...args, '--out', mkdtempSync(join(tmpdir(), 'queue-plugin-local-')));
    expect(local.code, local.stderr).toBe(0);
    const reference = rowsOf(local.stdout);
    expect(reference.map((r) => [r.method, (r as unknown as { quantizer: string }).quantizer])).toEqual([['first-config', 'rtn']]);
    const redis = await startRedis();
    try {
      const out = mkdtempSync(join(tmpdir(), 'queue-plugin-'));
      const bare = worker(redis);
      const failed = start(...args, '--out', out, '--queue', redis.url, '--attempts', '1');
      expect((await failed.exited).code).toBe(1);
      expect(failed.output.stderr).toMatch(/allocator "first-config" is not in this worker's registry .*start `layerquant worker` with the coordinator's --plugin modules/);
      bare.child.kill('SIGTERM');
      await bare.exited;
      const loaded = worker(redis, '--plugin', module);
      const again = start(...args, '--out', out, '--queue', redis.url);
      expect((await again.exited).code, again.output.stderr).toBe(0);
      expect(withoutTime(rowsOf(again.output.stdout))).toEqual(withoutTime(reference));
      expect([...computedCounts(loaded).values()]).toEqual([1]);
    } finally {
      await redis.stop();
    }
  }, 120_000);
});

// Its own block: it needs no reference grid of the suite above.
describe.skipIf(!haveRedis)('experiment --queue computing its statistics (real redis-server on 127.0.0.1)', () => {
  /** The statistics cache of a grid's --out: file name -> content, per table file (settings.json aside). */
  const cachedTables = (out: string): Record<string, string> => {
    const cache = join(out, 'stats');
    const keys = readdirSync(cache).filter((name) => !name.startsWith('.'));
    expect(keys).toHaveLength(1);
    const dir = join(cache, keys[0]!);
    return Object.fromEntries(readdirSync(dir).filter((f) => f.endsWith('.csv')).sort().map((f) => [f, readFileSync(join(dir, f), 'utf8')]));
  };

  it('computes its own statistics, table for table what the grid measures in process: KurtBoost without --stats, and fnorm, sensitivity, kurtosis, measured', async () => {
    // A tiny random model of 4 layers (the statistics' arithmetic is the same at any size; the shipped model made
    // this test 89 s of CI), its own text for calibration (one block of 512 tokens) and evaluation.
    const { model, text } = await tinyModelWithText('queue-stats-model-', 'text.txt');
    const redis = await startRedis();
    try {
      const workers = [worker(redis, '--model', model), worker(redis, '--model', model)];
      const common = ['--calib', text, '--text', text, '--seqlen', '32', '--max-tokens', '128', '--no-fp', '--json'];
      const grids = [
        ['experiment', model, '--methods', 'kurtboost-2-1', '--budgets', '3.25', ...common],
        // Every built-in table: fnorm (sensi-milp, kurt-milp), sensitivity, kurtosis, measured; a short ladder and one block.
        ['experiment', model, '--methods', 'sensi-milp-1,kurt-milp-1,measured', '--configs', 'b2g64,b4g64', '--budgets', '3', '--blocks', '1', ...common],
      ];
      const expectedTables = [['kurtosis.csv'], ['fnorm.csv', 'kurtosis.csv', 'measured.csv', 'sensitivity.csv']];
      for (const [i, grid] of grids.entries()) {
        const local = mkdtempSync(join(tmpdir(), 'queue-stats-local-'));
        const inProcess = await bin(...grid, '--out', local);
        expect(inProcess.code, inProcess.stderr).toBe(0);
        const queued = mkdtempSync(join(tmpdir(), 'queue-stats-'));
        const coordinator = start(...grid, '--out', queued, '--queue', redis.url);
        expect((await coordinator.exited).code, coordinator.output.stderr).toBe(0);
        expect(coordinator.output.stderr).toMatch(/queue: statistics (\d+)\/\1 done/);
        expect(withoutTime(rowsOf(coordinator.output.stdout))).toEqual(withoutTime(rowsOf(inProcess.stdout)));
        const tables = cachedTables(queued);
        expect(Object.keys(tables)).toEqual(expectedTables[i]);
        expect(tables).toEqual(cachedTables(local));
      }
      // Weight tables a layer per job (4 layers, twice), the activation tables in one job.
      const jobs = workers.reduce((n, w) => n + [...w.output.stderr.matchAll(/computed statistics job/g)].length, 0);
      expect(jobs).toBeGreaterThanOrEqual(4 + 4 + 1);
    } finally {
      await redis.stop();
    }
  }, 240_000);
});

// Its own block: a calibrated quantizer on the queue, on a tiny random model (seconds).
describe.skipIf(!haveRedis)('experiment --queue with a calibrated quantizer (gptq; real redis-server on 127.0.0.1)', () => {
  it('two workers give the in-process rows of a gptq grid (statistics measured with gptq); a cell whose calibration text is not in Redis, or that names none, fails naming it', async () => {
    const { model, text } = await tinyModelWithText('queue-gptq-', 'calib.txt');
    // uniform and sensi-milp-1 (its fnorm table measured with gptq, one layer pass on the calibration block) at b2g64/b4g64.
    const grid = ['experiment', model, '--quantizer', 'gptq', '--methods', 'hqq,sensi-milp-1', '--configs', 'b2g64,b4g64', '--budgets', '3', '--calib', text, '--blocks', '1', '--text', text, '--seqlen', '32', '--max-tokens', '128', '--no-fp', '--json'];
    const inProcess = await bin(...grid, '--out', mkdtempSync(join(tmpdir(), 'queue-gptq-local-')));
    expect(inProcess.code, inProcess.stderr).toBe(0);
    const reference = rowsOf(inProcess.stdout);
    expect(reference.map((r) => [r.method, (r as unknown as { quantizer: string }).quantizer])).toEqual([['hqq', 'gptq'], ['sensi-milp-1', 'gptq']]);
    const redis = await startRedis();
    const queue = new Queue(QUEUE_NAME, { connection: parseQueueUrl(redis.url).connection });
    try {
      const workers = [worker(redis, '--model', model), worker(redis, '--model', model)];
      const coordinator = start(...grid, '--out', mkdtempSync(join(tmpdir(), 'queue-gptq-')), '--queue', redis.url);
      expect((await coordinator.exited).code, coordinator.output.stderr).toBe(0);
      // The perplexity of every cell to the last digit, and every other field but the time.
      expect(withoutTime(rowsOf(coordinator.output.stdout))).toEqual(withoutTime(reference));
      expect(coordinator.output.stderr).toMatch(/queue: statistics 1\/1 done/);
      expect([...computedCounts(...workers).values()]).toEqual([1, 1]);

      // A cell job as the coordinator wrote it, added again with its calibration text's blob changed or removed.
      const done = (await queue.getJobs(['completed'])).find((j) => j.name === 'cell')!;
      const data = done.data as { calibration: { blob: string; name: string } };
      expect(data.calibration.name).toBe('calib.txt');
      const outcome = async (changed: Record<string, unknown>) => {
        await done.remove();
        const job = await queue.add('cell', changed, { jobId: done.id!, attempts: 1 });
        for (let i = 0; i < 600 && !['completed', 'failed'].includes(await job.getState()); i++) await new Promise((r) => setTimeout(r, 50));
        return { state: await job.getState(), reason: (await queue.getJob(done.id!))!.failedReason };
      };
      const other = createHash('sha256').update('another calibration text').digest('hex');
      const missing = await outcome({ ...data, calibration: { ...data.calibration, blob: other } });
      expect(missing.state).toBe('failed');
      expect(missing.reason).toMatch(new RegExp(`the calibration text "calib\\.txt" \\(blob ${other.slice(0, 16)}\\) is not in Redis with that content hash`));
      const { calibration: _, ...without } = data;
      const unnamed = await outcome(without);
      expect(unnamed.state).toBe('failed');
      expect(unnamed.reason).toMatch(/data\.calibration is missing: quantizer "gptq" is calibrated.*not retried/);
    } finally {
      await queue.close();
      await redis.stop();
    }
  }, 180_000);
});
