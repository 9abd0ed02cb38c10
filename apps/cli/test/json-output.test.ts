import { llama2PaperDir, shippedModelDir, shippedOraclesDir } from '@layerquant/fixtures';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseValid, schemaErrors } from './json-schema.js';
import { bin, cli } from './run-cli.js';
import { tinyModel } from './tiny-model.js';

const scratch = mkdtempSync(join(tmpdir(), 'layerquant-json-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));
const boosted = join(scratch, 'sensiboost');
const exported = join(scratch, 'sensiboost-onnx');
const window = ['--dataset', 'brown-test', '--max-tokens', '1024', '--seqlen', '256'];

beforeAll(async () => {
  const q = await cli('quantize', shippedModelDir, '--method', 'sensiboost-2-1', '--budget', '3.25', '--stats', shippedOraclesDir, '--out', boosted, '--json');
  expect(q.code, q.stderr).toBe(0);
  parseValid(q.stdout, 'quantize');
  const e = await cli('export', boosted, '--format', 'onnx', '--out', exported, '--accuracy-level', '0', '--json');
  expect(e.code, e.stderr).toBe(0);
  parseValid(e.stdout, 'export');
}, 300_000);

/** Every path in a JSON value is absolute (keys that name a file or directory). */
function relativePaths(value: unknown, key = ''): string[] {
  if (typeof value === 'string') return /^(model|out|text|stats|file|files|baseline)$/.test(key) && !value.startsWith('/') ? [`${key}=${value}`] : [];
  if (Array.isArray(value)) return value.flatMap((v) => relativePaths(v, key));
  if (value && typeof value === 'object') return Object.entries(value).flatMap(([k, v]) => relativePaths(v, k));
  return [];
}

describe('--json: one schema for every command (schema/output.schema.json)', () => {
  it('the schema rejects the old shapes: ppl, MB keys, a config object, a missing envelope', () => {
    expect(schemaErrors({ command: 'eval', schemaVersion: 1, ppl: 80 })).not.toEqual([]);
    expect(schemaErrors({ ppl: 80 })).not.toEqual([]);
    expect(schemaErrors({ command: 'allocate', schemaVersion: 1, method: 'mxq', budget: 3, options: {}, stats: '/s', model: null, out: null, sizes: { params: 1, paperBitsPerWeight: 3, paperMiB: 1, diskBitsPerWeight: null, diskMiB: null }, boosts: null, allocation: { '0.mlp.up_proj': { bits: 4, groupSize: 64 } } })).not.toEqual([]);
    expect(schemaErrors({ command: 'inspect', schemaVersion: 1, error: { code: 'MISSING_FILE', message: 'x' } })).toEqual([]);
  });

  it('inspect of a checkpoint, a quantized checkpoint and an ONNX export; the boost report from quantization.json', async () => {
    for (const dir of [shippedModelDir, boosted, exported]) {
      const result = await bin('inspect', dir, '--json');
      expect(result.code, result.stderr).toBe(0);
      const json = parseValid<{ sizes: { diskMiB: number; paperMiB: number | null }; boosts: { layers: unknown[] } | null; layout: string }>(result.stdout, 'inspect');
      expect(relativePaths(json)).toEqual([]);
      expect(json.sizes.diskMiB).toBeGreaterThan(0);
      if (dir === shippedModelDir) expect(json.sizes.paperMiB).toBeNull();
      else expect(json.boosts?.layers.length).toBeGreaterThan(0);
    }
    const text = (await cli('inspect', boosted)).stdout;
    expect(text).toMatch(/paper size\s+\d+\.\d\d MiB, 3\.\d{4} bits\/weight/);
    expect(text).toMatch(/on disk\s+\d+\.\d\d MiB/);
    expect(text).toMatch(/boosted layers \(base b3g64, boosted b4g128\)/);
  });

  it('allocate (boost and knapsack, with and without --model) and its errors', async () => {
    const boost = parseValid<{ sizes: { diskMiB: number | null }; boosts: { layers: unknown[] } }>((await cli('allocate', '--stats', llama2PaperDir, '--method', 'sensiboost-2-1', '--budget', '3.25', '--json')).stdout, 'allocate');
    expect(boost.sizes.diskMiB).toBeNull();
    expect(boost.boosts.layers.length).toBe(7);
    const withModel = parseValid<{ sizes: { diskMiB: number } }>((await cli('allocate', '--stats', shippedOraclesDir, '--model', shippedModelDir, '--method', 'mxq', '--budget', '3.25', '--json')).stdout, 'allocate');
    expect(withModel.sizes.diskMiB).toBeGreaterThan(0);
    const failed = await bin('allocate', '--stats', llama2PaperDir, '--method', 'mxq', '--budget', '1', '--json');
    expect(failed.code).toBe(1);
    expect(parseValid<{ error: { code: string } }>(failed.stdout, 'allocate').error.code).toBe('INFEASIBLE_BUDGET');
    const unknown = await bin('nonsense', '--json');
    expect(unknown.code).toBe(1);
    parseValid(unknown.stdout, 'layerquant');
  });

  it('eval, generate, sensitivity, version', async () => {
    const evaluated = await cli('eval', exported, ...window, '--json');
    expect(evaluated.code, evaluated.stderr).toBe(0);
    expect(relativePaths(parseValid(evaluated.stdout, 'eval'))).toEqual([]);
    parseValid((await cli('generate', boosted, '--prompt', 'The jury said', '--max-new-tokens', '3', '--json')).stdout, 'generate');
    // The output's shape is the same for any model: the tiny random model and its own text.
    const m = await tinyModel();
    const sensitivity = await cli('sensitivity', m.dir, '--calib', m.text, '--blocks', '1', '--seqlen', '64', '--skip-fnorm', '--out', join(scratch, 'stats'), '--json');
    expect(sensitivity.code, sensitivity.stderr).toBe(0);
    expect(relativePaths(parseValid(sensitivity.stdout, 'sensitivity'))).toEqual([]);
    expect(parseValid<{ version: string }>((await bin('--version', '--json')).stdout, 'version').version).toMatch(/^\d+\.\d+\.\d+/);
    expect((await bin('--version')).stdout).toMatch(/^layerquant \d+\.\d+\.\d+\n$/);
  }, 120_000);

  it('experiment (a one-cell grid) and its results.csv without NaN', async () => {
    const out = join(scratch, 'experiment');
    const m = await tinyModel();
    const result = await cli('experiment', m.dir, '--stats', m.stats, '--methods', 'hqq', '--budgets', '4.25', '--text', m.text, '--max-tokens', '512', '--seqlen', '256', '--out', out, '--json');
    expect(result.code, result.stderr).toBe(0);
    const json = parseValid<{ rows: Array<{ method: string; perplexity: number; extraMemoryPercent: number | null }>; plan: { cells: number; windowsPerCell: number } }>(result.stdout, 'experiment');
    expect(json.plan).toMatchObject({ cells: 2, windowsPerCell: 2 });
    expect(json.rows.map((r) => r.method)).toEqual(['fp', 'hqq']);
    expect(json.rows[0]!.extraMemoryPercent).toBeNull();
    const csv = readFileSync(join(out, 'results.csv'), 'utf8');
    expect(csv).not.toMatch(/NaN|Infinity/);
    expect(csv.split('\n')[1]!.split(',').at(-3)).toBe(''); // the fp row has no HQQ baseline: empty
  }, 120_000);
});

describe('layerquant compare', () => {
  it('gives the same perplexities as separate eval runs, a paired interval against the first, sizes on disk', async () => {
    const compared = await cli('compare', shippedModelDir, boosted, exported, ...window, '--json');
    expect(compared.code, compared.stderr).toBe(0);
    const json = parseValid<{ windows: number; models: Array<{ model: string; perplexity: number; versusFirst: { difference: number; low: number; high: number } | null; sizes: { diskMiB: number; diskBitsPerWeight: number } }> }>(compared.stdout, 'compare');
    expect(json.windows).toBe(4);
    for (const [i, dir] of [shippedModelDir, boosted, exported].entries()) {
      const alone = parseValid<{ perplexity: number }>((await cli('eval', dir, ...window, '--json')).stdout, 'eval');
      expect(json.models[i]!.perplexity).toBeCloseTo(alone.perplexity, 9);
      if (i > 0) {
        const v = json.models[i]!.versusFirst!;
        expect(v.difference).toBeCloseTo(alone.perplexity - json.models[0]!.perplexity, 9);
        expect(v.low).toBeLessThanOrEqual(v.difference);
        expect(v.high).toBeGreaterThanOrEqual(v.difference);
      }
    }
    expect(json.models[0]!.versusFirst).toBeNull();
    expect(json.models[1]!.sizes.diskBitsPerWeight).toBeLessThan(json.models[0]!.sizes.diskBitsPerWeight / 2);
    const one = await cli('compare', shippedModelDir, ...window);
    expect(one.code).toBe(1);
    expect(one.stderr).toMatch(/at least two directories/);
  }, 300_000);
});

describe('model arguments', () => {
  it('a Hugging Face id names the cache snapshot it resolves to, or how to download it', async () => {
    const cache = join(scratch, 'hf');
    const missing = await cli('inspect', 'meta-llama/Llama-3.2-1B');
    expect(missing.code).toBe(1);
    expect(missing.stderr).toMatch(/reads local model directories only.*models--meta-llama--Llama-3\.2-1B\/snapshots\/<revision>/);
    const hf = await cli('inspect', 'hf://meta-llama/Llama-3.2-1B');
    expect(hf.stderr).toMatch(/^layerquant: error: hf:\/\/meta-llama\/Llama-3\.2-1B: is not a local directory/);
    // A snapshot in the cache (refs/main names it) is used as the model directory.
    const snapshot = join(cache, 'models--org--tiny', 'snapshots', 'abc123');
    mkdirSync(join(cache, 'models--org--tiny', 'refs'), { recursive: true });
    mkdirSync(snapshot, { recursive: true });
    writeFileSync(join(cache, 'models--org--tiny', 'refs', 'main'), 'abc123\n');
    const previous = process.env.HF_HUB_CACHE;
    process.env.HF_HUB_CACHE = cache;
    try {
      const resolved = await cli('inspect', 'org/tiny');
      expect(resolved.stderr).toMatch(new RegExp(`^layerquant: error: ${snapshot}[:/]`));
    } finally {
      if (previous === undefined) delete process.env.HF_HUB_CACHE;
      else process.env.HF_HUB_CACHE = previous;
    }
  });
});

