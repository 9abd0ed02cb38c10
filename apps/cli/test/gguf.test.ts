import { shippedModelDir } from '@layerquant/fixtures';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseValid } from './json-schema.js';
import { bin, cli } from './run-cli.js';

const scratch = mkdtempSync(join(tmpdir(), 'layerquant-cli-gguf-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));
const checkpoint = join(scratch, 'b4g32');
const file = join(scratch, 'b4g32.gguf');

beforeAll(async () => {
  expect((await cli('quantize', shippedModelDir, '--config', 'b4g32', '--out', checkpoint)).code).toBe(0);
});

describe('layerquant export --format gguf, quantize --format gguf, inspect and eval of .gguf files', () => {
  it('export --format gguf writes one file whose 224 matrices keep their codes as Q4_1 (JSON valid by the schema)', async () => {
    const { code, stdout } = await cli('export', checkpoint, '--format', 'gguf', '--out', file, '--json');
    expect(code).toBe(0);
    const json = parseValid<{ file: string; types: Record<string, number>; matrices: number; notes: string[]; fileBytes: number; overheadBytes: number }>(stdout, 'export');
    expect(json.file).toBe(file);
    expect(json.matrices).toBe(224);
    expect(json.types).toEqual({ Q4_1: 224, F16: 2 });
    expect(json.notes.join(' ')).toMatch(/224 quantized matrices keep their codes exactly/);
    expect(json.fileBytes).toBe(readFileSync(file).length);
    expect(readdirSync(scratch).filter((f) => f.endsWith('.tmp'))).toEqual([]);
  });

  it('inspect reads the file (strict header) and counts its matrices per type', async () => {
    const json = parseValid<Record<string, unknown>>((await cli('inspect', file, '--json')).stdout, 'inspect');
    expect(json).toMatchObject({ layout: 'gguf', architecture: 'LlamaForCausalLM', numLayers: 32, linearMatrices: 224, linearParams: 22_020_096, configs: { Q4_1: 224 } });
    // Q4_1: 20 bytes per 32 weights = 5 bits per weight.
    expect((json.sizes as { diskBitsPerWeight: number }).diskBitsPerWeight).toBe(5);
    expect((await cli('inspect', file)).stdout).toMatch(/224 Q4_1/);
  });

  it('eval runs the file in llama.cpp with its own tokenizer and agrees with eval of the checkpoint', async () => {
    const args = ['--dataset', 'brown-test', '--max-tokens', '1024', '--seqlen', '512', '--json'];
    const gguf = parseValid<{ perplexity: number; evaluation: string; windows: number; onnx: null }>((await cli('eval', file, ...args)).stdout, 'eval');
    const packed = parseValid<{ perplexity: number; windows: number }>((await cli('eval', checkpoint, ...args)).stdout, 'eval');
    expect(gguf.evaluation).toBe('gguf');
    expect(gguf.onnx).toBeNull();
    expect(gguf.windows).toBe(packed.windows);
    // llama.cpp quantizes activations to 8 bits inside its Q4_1 products (README of @layerquant/gguf).
    expect(Math.abs(gguf.perplexity - packed.perplexity) / packed.perplexity).toBeLessThan(1e-3);
  });

  it('quantize --format gguf (built binary) writes the .gguf file and one JSON object', async () => {
    const out = join(scratch, 'b5g32.gguf');
    const { code, stdout, stderr } = await bin('quantize', shippedModelDir, '--config', 'b5g32', '--out', out, '--format', 'gguf', '--json');
    expect(stderr).toBe('');
    expect(code).toBe(0);
    const json = parseValid<{ out: string; export: { types: Record<string, number> } }>(stdout, 'quantize');
    expect(json.out).toBe(out);
    expect(json.export.types).toEqual({ Q5_1: 224, F16: 2 });
    expect(existsSync(out)).toBe(true);
    expect(readdirSync(scratch).filter((f) => f.startsWith('.b5g32'))).toEqual([]);
  });

  it('refuses ONNX options with --format gguf, GGUF options without it, unknown types, and names the tensor of a damaged file', async () => {
    const onnxOption = await cli('export', checkpoint, '--format', 'gguf', '--out', join(scratch, 'x.gguf'), '--accuracy-level', '0');
    expect(onnxOption.code).toBe(1);
    expect(onnxOption.stderr).toMatch(/--accuracy-level.*ONNX option/);
    const ggufOption = await cli('export', checkpoint, '--format', 'onnx', '--out', join(scratch, 'x'), '--gguf-type', 'Q4_0');
    expect(ggufOption.stderr).toMatch(/--gguf-type.*--format gguf/);
    const unknown = await cli('export', checkpoint, '--format', 'gguf', '--out', join(scratch, 'x.gguf'), '--gguf-type', 'Q9_K');
    expect(unknown.stderr).toMatch(/Q9_K.*Q4_K/);
    const damaged = join(scratch, 'damaged.gguf');
    const bytes = readFileSync(file);
    writeFileSync(damaged, bytes.subarray(0, bytes.length - 100_000));
    const result = await cli('eval', damaged, '--dataset', 'brown-test', '--max-tokens', '512');
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(/damaged\.gguf \(tensor "output\.weight"\).*truncated/);
  });
});
