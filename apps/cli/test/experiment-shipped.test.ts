import { perplexity } from '@layerquant/perplexity';
import { openEvaluationModel } from '@layerquant/pipeline';
import { tinyConfig, writeModelDirectory } from '@layerquant/runtime/testing';
import { loadTokenizer } from '@layerquant/tensor-io';
import { mkdtempSync, readFileSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseValid } from './json-schema.js';
import { cli, expectRefused } from './run-cli.js';
import { writeWordText } from './word-text.js';

/**
 * experiment --target-format: a grid whose columns are sizes of the file a user ships. The oracle of a cell is the
 * user's own path to the same file: `quantize --format <f> --target-size <t>` on the grid's statistics, then `eval` of
 * that file. The file must be byte-identical and its perplexity the same number; and the file system holds every
 * file against its target.
 */
const scratch = mkdtempSync(join(tmpdir(), 'lq-experiment-shipped-'));
const model = join(scratch, 'model');
const text = join(scratch, 'text.txt');
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

beforeAll(async () => {
  // Rows of 256 and 512: whole k-quant super-blocks, so every llama.cpp type is on the ggml ladder; untied lm_head.
  await writeModelDirectory(model, tinyConfig({ hiddenSize: 256, intermediateSize: 512, headDim: 64, numLayers: 2, tieWordEmbeddings: false }), { seed: 11 });
  writeWordText(text, 1500);
});

type Row = { method: string; budget: number; perplexity: number; sizes: { shipped?: { format: string; MiB: number; predictedMiB: number; targetMiB: number; bitsPerWeight: number } }; kld?: { mean: number } };

/** The grid's statistics directory (the one cache entry under <out>/stats). */
function statsDirOf(out: string): string {
  const [key] = readdirSync(join(out, 'stats')).filter((name) => /^[0-9a-f]{16}$/.test(name));
  return join(out, 'stats', key!);
}

describe('layerquant experiment --target-format', () => {
  it('gguf: each cell is the .gguf file quantize writes at that size, measured in llama.cpp as eval measures it', async () => {
    const out = join(scratch, 'grid-gguf');
    const evaluation = ['--text', text, '--seqlen', '128', '--max-tokens', '512'];
    const grid = await cli('experiment', model, '--quantizer', 'ggml', '--target-format', 'gguf', '--tokenizer-pre', 'gpt-2', '--methods', 'mxq', '--target-sizes', '0.6,0.8', '--blocks', '1', '--calib', text, '--kld', '--out', out, '--json', ...evaluation);
    expect(grid.code, grid.stderr).toBe(0);
    const json = parseValid<{ rows: Row[]; files: string[] }>(grid.stdout, 'experiment');
    expect(json.rows.map((r) => [r.method, r.budget])).toEqual([['fp', null], ['mxq', 0.6], ['mxq', 0.8]]);
    for (const row of json.rows.slice(1)) {
      const shipped = row.sizes.shipped!;
      expect(shipped.format).toBe('gguf');
      // every byte of the file: at most the target, within 1% of it, as the cost model predicted
      expect(shipped.MiB).toBeLessThanOrEqual(row.budget);
      expect(shipped.MiB).toBeGreaterThanOrEqual(0.99 * row.budget);
      expect(shipped.predictedMiB).toBe(shipped.MiB);
      expect(row.kld!.mean).toBeGreaterThan(0);
    }
    // the smaller file is the worse one
    expect(json.rows[1]!.kld!.mean).toBeGreaterThan(json.rows[2]!.kld!.mean);
    // results.csv and results.md carry the shipped size
    const csv = readFileSync(join(out, 'results.csv'), 'utf8');
    expect(csv.split('\n')[0]).toMatch(/shipped_format,shipped_MiB,shipped_bits_per_weight,predicted_MiB,target_MiB/);
    expect(readFileSync(join(out, 'results.md'), 'utf8')).toMatch(/target MiB of the shipped GGUF file/);
    // the user's path to the 0.6 MiB file: the same bytes and the same perplexity
    const file = join(scratch, 'user-0.6.gguf');
    const quantized = await cli('quantize', model, '--quantizer', 'ggml', '--method', 'mxq', '--format', 'gguf', '--tokenizer-pre', 'gpt-2', '--target-size', '0.6', '--stats', statsDirOf(out), '--out', file);
    expect(quantized.code, quantized.stderr).toBe(0);
    expect(statSync(file).size / 2 ** 20).toBe(json.rows[1]!.sizes.shipped!.MiB);
    // The grid measures every cell on its own token ids (the checkpoint's tokenizer; this test tokenizer is one llama.cpp
    // splits otherwise with gpt-2's pre-tokenizer), so the file is evaluated as eval evaluates it, on those ids.
    const ids = (await loadTokenizer(model)).encode(readFileSync(text, 'utf8'));
    const opened = await openEvaluationModel(file, {});
    expect(opened.kind).toBe('gguf');
    const evaluated = await perplexity(opened.model, ids, { seqlen: 128, maxTokens: 512 });
    await opened.dispose();
    expect(json.rows[1]!.perplexity).toBe(evaluated.ppl);
    // a rerun reuses every cell (the same settings key)
    const again = await cli('experiment', model, '--quantizer', 'ggml', '--target-format', 'gguf', '--tokenizer-pre', 'gpt-2', '--methods', 'mxq', '--target-sizes', '0.6,0.8', '--blocks', '1', '--calib', text, '--kld', '--out', out, '--json', ...evaluation);
    expect(again.code, again.stderr).toBe(0);
    expect(parseValid<{ rows: Row[] }>(again.stdout, 'experiment').rows.map((r) => r.perplexity)).toEqual(json.rows.map((r) => r.perplexity));
    // nothing left in the temporary directory's place
    expect(readdirSync(out).sort()).toEqual(['kld', 'results.csv', 'results.json', 'results.md', 'stats']);
  });

  it('onnx: each cell is the ONNX export quantize writes at that size, measured in onnxruntime as eval measures it', async () => {
    const out = join(scratch, 'grid-onnx');
    const evaluation = ['--text', text, '--seqlen', '128', '--max-tokens', '512'];
    const grid = await cli('experiment', model, '--target-format', 'onnx', '--methods', 'mxq', '--target-sizes', '1', '--blocks', '1', '--calib', text, '--no-fp', '--out', out, '--json', ...evaluation);
    expect(grid.code, grid.stderr).toBe(0);
    const [row] = parseValid<{ rows: Row[] }>(grid.stdout, 'experiment').rows;
    expect(row!.sizes.shipped).toMatchObject({ format: 'onnx', predictedMiB: row!.sizes.shipped!.MiB });
    expect(row!.sizes.shipped!.MiB).toBeLessThanOrEqual(1);
    const dir = join(scratch, 'user-onnx');
    const quantized = await cli('quantize', model, '--method', 'mxq', '--format', 'onnx', '--target-size', '1', '--stats', statsDirOf(out), '--out', dir);
    expect(quantized.code, quantized.stderr).toBe(0);
    const onnxBytes = readdirSync(join(dir, 'onnx')).reduce((sum, name) => sum + statSync(join(dir, 'onnx', name)).size, 0);
    expect(onnxBytes / 2 ** 20).toBe(row!.sizes.shipped!.MiB);
    const evaluated = parseValid<{ perplexity: number; evaluation: string }>((await cli('eval', dir, ...evaluation, '--json')).stdout, 'eval');
    expect(evaluated.evaluation).toBe('onnx');
    expect(row!.perplexity).toBe(evaluated.perplexity);
  });

  it('refuses what a grid of shipped files cannot be, naming the flag, before any work', async () => {
    const out = join(scratch, 'refused');
    for (const [args, message] of [
      [['--methods', 'hqq', '--target-format', 'gguf', '--tokenizer-pre', 'gpt-2', '--target-sizes', '1'], /hqq allocates at a stop of the ladder/],
      [['--methods', 'mxq', '--target-format', 'gguf', '--target-sizes', '1', '--budgets', '3'], /--budgets.*--target-sizes/],
      [['--methods', 'mxq', '--target-sizes', '1'], /--target-sizes.*--target-format onnx or gguf/],
      [['--methods', 'mxq', '--target-format', 'gguf'], /--target-sizes.*needs the grid's file sizes/],
      [['--methods', 'mxq', '--target-format', 'tflite', '--target-sizes', '1'], /--target-format.*onnx or gguf/],
      [['--methods', 'mxq', '--target-format', 'onnx', '--target-sizes', '1', '--tokenizer-pre', 'gpt-2'], /--tokenizer-pre.*GGUF option/],
      [['--methods', 'mxq', '--target-format', 'gguf', '--tokenizer-pre', 'gpt-2', '--target-sizes', '1,1'], /--target-sizes.*twice/],
      [['--methods', 'mxq', '--target-format', 'gguf', '--tokenizer-pre', 'gpt-2', '--target-sizes', '1', '--queue', 'redis://127.0.0.1:1/0'], /--queue.*runs in this process/],
    ] as const) {
      expectRefused(await cli('experiment', model, ...args, '--seqlen', '128', '--out', out), message);
    }
    expect(() => statSync(join(out, 'results.json'))).toThrow();
  });
});
