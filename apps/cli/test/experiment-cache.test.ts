import { loadStatsDirectory } from '@layerquant/allocators/node';
import { brownCalibPath, shippedModelDir, shippedOraclesDir } from '@layerquant/fixtures';
import { spawn } from 'node:child_process';
import { copyFileSync, existsSync, mkdtempSync, openSync, readdirSync, readFileSync, symlinkSync, writeFileSync, writeSync, closeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import type { ResultsFileRow } from '@layerquant/experiment';
import { ensureStatistics, modelContentHash, type ComputedStatsSettings, type StatisticsRequest } from '@layerquant/pipeline';

interface JsonRow {
  readonly method: string;
  readonly budget: number | null;
  readonly perplexity: number;
  readonly seconds: number;
}
import { bin, binPath, cli } from './run-cli.js';
import { tinyModel, type TinyModel } from './tiny-model.js';

const needs = ['fnorm', 'sensitivity', 'kurtosis'];

/** A copy of the shipped model: small files copied, shards linked, except `copied` (a real copy to edit). */
function modelCopy(copied?: string): string {
  const dir = mkdtempSync(join(tmpdir(), 'model-copy-'));
  for (const name of readdirSync(shippedModelDir)) {
    if (name === 'oracles') continue;
    if (name.endsWith('.safetensors') && name !== copied) symlinkSync(join(shippedModelDir, name), join(dir, name));
    else copyFileSync(join(shippedModelDir, name), join(dir, name));
  }
  return dir;
}

describe('model content hash', () => {
  it('is the same for a copy, differs when a weight byte, the config or the tokenizer changes', async () => {
    const original = await modelContentHash(shippedModelDir);
    expect(await modelContentHash(modelCopy())).toBe(original);
    const shard = 'model-00002-of-00004.safetensors';
    const edited = modelCopy(shard);
    // Flip one byte at the start of the data section (inside the first sampled slice).
    const bytes = readFileSync(join(edited, shard));
    const dataStart = 8 + Number(bytes.readBigUInt64LE(0));
    const fd = openSync(join(edited, shard), 'r+');
    writeSync(fd, Buffer.from([bytes[dataStart]! ^ 0x01]), 0, 1, dataStart);
    closeSync(fd);
    expect(await modelContentHash(edited)).not.toBe(original);
    const config = modelCopy();
    writeFileSync(join(config, 'config.json'), readFileSync(join(config, 'config.json'), 'utf8').replace('"rms_norm_eps"', '"rms_norm_eps_x"'));
    expect(await modelContentHash(config)).not.toBe(original);
    const tokenizer = modelCopy();
    writeFileSync(join(tokenizer, 'tokenizer_config.json'), `${readFileSync(join(tokenizer, 'tokenizer_config.json'), 'utf8')} `);
    expect(await modelContentHash(tokenizer)).not.toBe(original);
  });
});

describe('statistics cache keyed by settings', () => {
  it('reuses only under the same model, calibration text and blocks, and says why not', async () => {
    const out = mkdtempSync(join(tmpdir(), 'stats-cache-'));
    const calls: ComputedStatsSettings[] = [];
    // The measurement is the sensitivity package's (tested there); here the tables are the shipped oracles', so
    // the test exercises only which settings reuse which cache.
    const compute = async (request: StatisticsRequest) => {
      calls.push(request.settings);
      return loadStatsDirectory(shippedOraclesDir);
    };
    const notes: string[] = [];
    const run = (blocks: number, calibrationPath = brownCalibPath, modelDir = shippedModelDir) =>
      ensureStatistics({ modelDir, cacheDir: join(out, 'stats'), needs, calibrationPath, calibrationName: 'brown-calib', blocks, seqlen: 512, compute, onNote: (l) => notes.push(l) });
    const first = await run(2);
    expect(first.computed).toBe(true);
    expect(calls).toHaveLength(1);
    const again = await run(2);
    expect(again.computed).toBe(false);
    expect(again.key).toBe(first.key);
    expect(calls).toHaveLength(1);
    expect(notes.at(-1)).toMatch(/^statistics: reusing .*stats\/[0-9a-f]{16} \(same model content/);
    const four = await run(4);
    expect(calls).toHaveLength(2);
    expect(four.key).not.toBe(first.key);
    expect(notes.some((l) => /not reusing .*: other settings \(blocks 2 -> 4\)/.test(l))).toBe(true);
    const calib = join(out, 'calib.txt');
    writeFileSync(calib, `${readFileSync(brownCalibPath, 'utf8')}x`);
    const otherText = await run(2, calib);
    expect(calls).toHaveLength(3);
    expect(otherText.key).not.toBe(first.key);
    expect(notes.some((l) => /other settings \(calibration "/.test(l))).toBe(true);
    const otherModel = modelCopy();
    writeFileSync(join(otherModel, 'tokenizer_config.json'), `${readFileSync(join(otherModel, 'tokenizer_config.json'), 'utf8')} `);
    await run(2, brownCalibPath, otherModel);
    expect(calls).toHaveLength(4);
    // Every settings key has its own directory; nothing else is left in the cache.
    const dirs = readdirSync(join(out, 'stats'));
    expect(dirs).toHaveLength(4);
    expect(dirs).toEqual(expect.arrayContaining([first.key, four.key, otherText.key]));
    expect(dirs.every((n) => /^[0-9a-f]{16}$/.test(n))).toBe(true);
  });
});

/** The grids below run on a tiny random model with its own text and statistics (on the shipped model they were 80 s of CI). */
let m: TinyModel;
const base = () => ['experiment', m.dir, '--stats', m.stats, '--no-fp', '--json', '--text', m.text, '--seqlen', '256'];
/** The rows of `experiment --json` (schema/output.schema.json: `perplexity`, `sizes`, ...). */
const rowsOf = (stdout: string) => (JSON.parse(stdout) as { rows: JsonRow[] }).rows;
const withoutTime = (rows: readonly JsonRow[]) => rows.map(({ seconds: _, ...r }) => r);

describe('experiment cells keyed by settings', () => {
  beforeAll(async () => {
    m = await tinyModel();
  }, 120_000);
  it('keeps rows of other --max-tokens and --methods, shows the current ones, reuses each under its own settings', async () => {
    const out = mkdtempSync(join(tmpdir(), 'experiment-keys-'));
    const a = await cli(...base(), '--methods', 'hqq', '--budgets', '3.25', '--max-tokens', '1024', '--out', out);
    expect(a.code).toBe(0);
    const b = await cli(...base(), '--methods', 'hqq', '--budgets', '3.25', '--max-tokens', '1536', '--out', out);
    expect(b.code).toBe(0);
    expect(b.stderr).toMatch(/not reusing hqq @ 3\.25 .*maxTokens 1024 -> 1536/);
    expect(rowsOf(b.stdout)[0]!.perplexity).not.toBe(rowsOf(a.stdout)[0]!.perplexity);
    const saved = JSON.parse(readFileSync(join(out, 'results.json'), 'utf8')) as { cells: Record<string, { row: ResultsFileRow }> };
    expect(Object.keys(saved.cells)).toHaveLength(2);
    // Per-window NLL: the windows' sums over their tokens give back the cell's perplexity.
    for (const cell of Object.values(saved.cells)) {
      const sum = cell.row.windowNll!.reduce((s, x) => s + x, 0);
      const tokens = cell.row.windowWeights!.reduce((s, x) => s + x, 0);
      expect(Math.abs(Math.exp(sum / tokens) - cell.row.perplexity) / cell.row.perplexity).toBeLessThan(1e-12);
    }
    expect(readFileSync(join(out, 'results.csv'), 'utf8').trim().split('\n')).toHaveLength(2);
    const c = await cli(...base(), '--methods', 'hqq', '--budgets', '3.25', '--max-tokens', '1024', '--out', out);
    expect(c.stderr).toMatch(/reusing 1 of 1 cells/);
    expect(rowsOf(c.stdout)).toEqual(rowsOf(a.stdout));
    const d = await cli(...base(), '--methods', 'hqq,kurtboost-2-1', '--budgets', '3.25', '--max-tokens', '1024', '--out', out);
    expect(d.stderr).toMatch(/reusing 1 of 2 cells/);
    expect(rowsOf(d.stdout).map((r) => r.method)).toEqual(['hqq', 'kurtboost-2-1']);
    const e = await cli(...base(), '--methods', 'hqq', '--budgets', '3.25', '--max-tokens', '1024', '--out', out);
    expect(rowsOf(e.stdout).map((r) => r.method)).toEqual(['hqq']);
    expect(Object.keys((JSON.parse(readFileSync(join(out, 'results.json'), 'utf8')) as { cells: object }).cells)).toHaveLength(3);
  });

  it('a truncated or damaged results.json, an --out that is a file or under one: typed errors, nothing changed', async () => {
    const out = mkdtempSync(join(tmpdir(), 'experiment-bad-'));
    writeFileSync(join(out, 'results.json'), '{"format":"layerquant-experiment-results","version":2,"cells":{"ab');
    const args = [...base(), '--methods', 'hqq', '--budgets', '3.25', '--max-tokens', '1024'];
    const truncated = await cli(...args, '--out', out);
    expect(truncated.code).toBe(1);
    expect(truncated.stderr).toMatch(/^layerquant: error: .*results\.json: is truncated or not JSON .*pass --fresh/);
    expect(readdirSync(out)).toEqual(['results.json']);
    writeFileSync(join(out, 'results.json'), '{"format":"layerquant-experiment-results","version":2,"cells":{"k":{"key":"k"}}}');
    expect((await cli(...args, '--out', out)).stderr).toMatch(/cell "k" is incomplete/);
    const file = join(out, 'results.json');
    const asFile = await cli(...args, '--out', file);
    expect(asFile.code).toBe(1);
    expect(asFile.stderr).toMatch(/--out is an existing file/);
    const under = await cli(...args, '--out', join(file, 'sub'));
    expect(under.code).toBe(1);
    expect(under.stderr).toMatch(/lies under .*which is a file/);
  });
});

/**
 * Starts the built CLI; resolves once `ready(dir)` holds (polled), then kills it with `signal`. Each finished cell is
 * held 1.5 s before it is recorded (the test hook LAYERQUANT_TEST_CELL_DELAY_MS), so the signal reaches the run while
 * the next cell is in flight however fast the cells are and however late this process polls.
 */
function runAndKill(argv: string[], ready: () => boolean, signal: NodeJS.Signals): Promise<{ code: number | null; signal: NodeJS.Signals | null; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [binPath, ...argv], { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, LAYERQUANT_TEST_CELL_DELAY_MS: '1500' } });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setInterval(() => {
      if (ready()) {
        clearInterval(timer);
        child.kill(signal);
      }
    }, 20);
    child.on('exit', (code, sig) => {
      clearInterval(timer);
      resolve({ code, signal: sig, stderr });
    });
  });
}

const cellsIn = (out: string) => {
  try {
    return Object.keys((JSON.parse(readFileSync(join(out, 'results.json'), 'utf8')) as { cells: object }).cells).length;
  } catch {
    return 0;
  }
};

describe('experiment interrupted', () => {
  const grid: string[] = [];
  beforeAll(async () => {
    m = await tinyModel();
    grid.push('experiment', m.dir, '--stats', m.stats, '--methods', 'hqq,sensiboost-2-1', '--budgets', '3.25', ...m.evaluation, '--json');
  }, 120_000);
  let uninterrupted: Promise<{ code: number; stdout: string }> | undefined;
  it.each(['SIGINT', 'SIGKILL'] as const)('by %s during the second cell: the rerun leaves no stray file, keeps the finished cell and matches an uninterrupted run', async (signal) => {
    uninterrupted ??= bin(...grid, '--out', mkdtempSync(join(tmpdir(), 'experiment-ref-')));
    const whole = await uninterrupted;
    expect(whole.code).toBe(0);
    const out = mkdtempSync(join(tmpdir(), `experiment-${signal}-`));
    // Kill once the first of the three cells (fp, hqq, sensiboost) is saved: the second is being computed.
    const killed = await runAndKill([...grid, '--out', out], () => cellsIn(out) >= 1, signal);
    expect(killed.signal === signal || killed.code === 130).toBe(true);
    const finishedBefore = cellsIn(out);
    expect(finishedBefore).toBeGreaterThanOrEqual(1);
    expect(finishedBefore).toBeLessThan(3);
    if (signal === 'SIGINT') {
      // The handler removed its temporaries and the lock at once.
      expect(readdirSync(out).filter((n) => n.startsWith('.'))).toEqual([]);
    }
    const rerun = await bin(...grid, '--out', out);
    expect(rerun.code).toBe(0);
    expect(rerun.stderr).toMatch(new RegExp(`reusing ${finishedBefore} of 3 cells`));
    expect(withoutTime(rowsOf(rerun.stdout))).toEqual(withoutTime(rowsOf(whole.stdout)));
    expect(readdirSync(out).sort()).toEqual(['results.csv', 'results.json', 'results.md']);
    expect(existsSync(join(out, '.layerquant.lock'))).toBe(false);
  }, 240_000);
});
