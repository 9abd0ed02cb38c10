import { shippedModelDir } from '@layerquant/fixtures';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bin, cli } from './run-cli.js';

const scratch = mkdtempSync(join(tmpdir(), 'layerquant-cli-export-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));
const checkpoint = join(scratch, 'b4g64');
const exported = join(scratch, 'b4g64-onnx');

beforeAll(async () => {
  expect((await cli('quantize', shippedModelDir, '--config', 'b4g64', '--out', checkpoint)).code).toBe(0);
  expect((await cli('export', checkpoint, '--format', 'onnx', '--out', exported, '--accuracy-level', '0')).code).toBe(0);
});

describe('layerquant export, quantize --format onnx, generate', () => {
  it('quantize --format onnx writes the transformers.js layout and one JSON object (built binary)', async () => {
    const out = join(scratch, 'direct');
    const { code, stdout, stderr } = await bin('quantize', shippedModelDir, '--config', 'b2g64', '--out', out, '--format', 'onnx', '--json');
    expect(stderr).toBe('');
    expect(code).toBe(0);
    const json = JSON.parse(stdout) as { sizes: { paperBitsPerWeight: number }; out: string; export: { file: string; dtype: string; accuracyLevel: number; sizes: { diskBitsPerWeight: number } } };
    expect(json.sizes.paperBitsPerWeight.toFixed(4)).toBe('2.2539');
    expect(json.out).toBe(out);
    expect(json.export).toMatchObject({ file: join(out, 'onnx', 'model_q4.onnx'), dtype: 'q4', accuracyLevel: 4 });
    // per matrix [N, K]: 2-bit codes, an fp16 scale and fp16 zero correction per group of 64 (--scale-dtype's default),
    // 2-bit zero points packed per row into whole bytes (ceil(K/64 * 2 / 8))
    const shapes = [[256, 256], [128, 256], [128, 256], [256, 256], [640, 256], [640, 256], [256, 640]] as const;
    const bytes = 32 * shapes.reduce((sum, [n, k]) => sum + (n * k) / 4 + n * (k / 64) * 4 + n * Math.ceil((k / 64) * 2 / 8), 0);
    expect(json.export.sizes.diskBitsPerWeight).toBeCloseTo((8 * bytes) / 22_020_096, 12);
    expect(readdirSync(out).sort()).toEqual(['config.json', 'generation_config.json', 'onnx', 'quantization.json', 'tokenizer.json', 'tokenizer_config.json']);
    expect(readdirSync(scratch).filter((f) => f.endsWith('.tmp'))).toEqual([]);
  });

  it('inspect counts the linear weights of both quantized layouts', async () => {
    const quantized = JSON.parse((await cli('inspect', checkpoint, '--json')).stdout) as Record<string, unknown>;
    expect(quantized).toMatchObject({ layout: 'layerquant-quantized-v1', params: 26_231_040, linearParams: 22_020_096, linearMatrices: 224, configs: { b4g64: 224 } });
    const onnx = JSON.parse((await cli('inspect', exported, '--json')).stdout) as Record<string, unknown>;
    expect(onnx).toMatchObject({ layout: 'onnx', linearParams: 22_020_096, linearMatrices: 224, configs: { b4g64: 224 }, numLayers: 32 });
    expect((await cli('inspect', exported)).stdout).toMatch(/MatMulNBits\s+b4g64 x224/);
  });

  it('eval of the exported file (packed weights) agrees with eval of the dequantized checkpoint', async () => {
    const args = ['--dataset', 'brown-test', '--max-tokens', '512', '--seqlen', '256', '--json'];
    const onnx = JSON.parse((await cli('eval', exported, ...args)).stdout) as { perplexity: number; onnx: string };
    const dequantized = JSON.parse((await cli('eval', checkpoint, ...args)).stdout) as { perplexity: number };
    expect(onnx.onnx).toBe(join(exported, 'onnx', 'model_q4.onnx'));
    expect(Math.abs(onnx.perplexity - dequantized.perplexity) / dequantized.perplexity).toBeLessThan(1e-4);
  });

  it('generate writes the same greedy continuation from the checkpoint and from its export', async () => {
    const fromExport = JSON.parse((await cli('generate', exported, '--prompt', 'The jury said', '--max-new-tokens', '12', '--json')).stdout) as { ids: number[]; text: string; source: string };
    const fromCheckpoint = JSON.parse((await cli('generate', checkpoint, '--prompt', 'The jury said', '--max-new-tokens', '12', '--json')).stdout) as { ids: number[]; source: string };
    expect(fromExport.source).toBe('onnx');
    expect(fromCheckpoint.source).toBe('quantized');
    expect(fromExport.ids).toEqual(fromCheckpoint.ids);
    expect(fromExport.text.length).toBeGreaterThan(5);
    for (const dir of [checkpoint, exported]) expect((await cli('generate', dir, '--prompt', 'The jury said', '--max-new-tokens', '2', '--max-memory', '0.05')).code).toBe(0);
    const human = await cli('generate', shippedModelDir, '--prompt', 'The jury said', '--max-new-tokens', '4');
    expect(human.stdout).toMatch(/^The jury said[\s\S]*\(float checkpoint; \d+ tokens/);
  });

  it('exits 1 with one line naming the problem on bad input', async () => {
    const strided = join(scratch, 'strided');
    expect((await cli('quantize', shippedModelDir, '--method', 'rtn', '--config', 'b4g64', '--axis', '0', '--out', strided)).code).toBe(0);
    const cases: Array<[string[], RegExp]> = [
      [['export', strided, '--format', 'onnx', '--out', join(scratch, 'x')], /axis 0.*--axis 1/],
      [['export', checkpoint, '--format', 'tflite', '--out', join(scratch, 'x')], /--format/],
      [['export', checkpoint, '--format', 'gguf', '--out', join(scratch, 'x')], /--out.*\.gguf/],
      [['export', checkpoint, '--out', join(scratch, 'x')], /--format onnx/],
      [['export', checkpoint, '--format', 'onnx', '--accuracy-level', '2', '--out', join(scratch, 'x')], /--accuracy-level/],
      [['quantize', shippedModelDir, '--config', 'b4g64', '--out', join(scratch, 'y'), '--activations', 'f16'], /--format onnx/],
      [['generate', exported], /--prompt/],
      [['generate', exported, '--prompt', 'x', '--max-new-tokens', '0'], /--max-new-tokens/],
      // A float model whose float32 weights exceed the budget is refused before loading (not killed at the limit);
      // the same budget passes the packed checkpoint and the export.
      [['generate', shippedModelDir, '--prompt', 'x', '--max-memory', '0.05'], /generate of .*needs about [\d.]+ GiB, more than the memory budget of [\d.]+ GiB; quantize it first/],
    ];
    for (const [argv, message] of cases) {
      const { code, stderr } = await cli(...argv);
      expect(code, argv.join(' ')).toBe(1);
      expect(stderr.trim().split('\n'), argv.join(' ')).toHaveLength(1);
      expect(stderr, argv.join(' ')).toMatch(message);
    }
    expect(readdirSync(scratch)).not.toContain('x');
  });
});
