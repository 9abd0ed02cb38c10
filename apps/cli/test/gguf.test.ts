import { shippedModelDir } from '@layerquant/fixtures';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
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

  it('eval runs a .gguf file in llama.cpp with its own tokenizer; compare pairs its windows with the checkpoint\'s, perplexity within 1e-4 (--gguf-type F32)', async () => {
    // F32 holds the checkpoint's dequantized weights exactly: what is left is float arithmetic (1.7e-5 measured on one
    // window of 256, 7e-6 on two of 128). The Q4_1 file's agreement is @layerquant/gguf's tests' and bench/gguf.mjs'.
    const f32 = join(scratch, 'b4g32-f32.gguf');
    const exported = parseValid<{ types: Record<string, number> }>((await cli('export', checkpoint, '--format', 'gguf', '--gguf-type', 'F32', '--out', f32, '--json')).stdout, 'export');
    expect(exported.types).toEqual({ F32: 226 });
    const window = ['--dataset', 'brown-test', '--max-tokens', '256', '--seqlen', '128', '--json'];
    const gguf = parseValid<{ perplexity: number; evaluation: string; windows: number; onnx: null }>((await cli('eval', f32, ...window)).stdout, 'eval');
    expect(gguf.evaluation).toBe('gguf');
    expect(gguf.onnx).toBeNull();
    expect(gguf.windows).toBe(2);
    // compare refuses models whose tokenizers cut the text into other windows: the file's tokenizer is the checkpoint's.
    const compared = parseValid<{ windows: number; models: Array<{ layout: string; perplexity: number }> }>((await cli('compare', checkpoint, f32, ...window)).stdout, 'compare');
    expect(compared.windows).toBe(2);
    expect(compared.models.map((m) => m.layout)).toEqual(['layerquant-quantized-v1', 'gguf']);
    const [packed, file] = compared.models.map((m) => m.perplexity) as [number, number];
    expect(file).toBe(gguf.perplexity);
    expect(Math.abs(file - packed) / packed, `llama.cpp ${file} vs layerquant ${packed}`).toBeLessThan(1e-4);
  });

  it('quantize --format gguf (built binary) writes the .gguf file and one JSON object', async () => {
    const out = join(scratch, 'b5g32.gguf');
    const { code, stdout, stderr } = await bin('quantize', shippedModelDir, '--config', 'b5g32', '--out', out, '--format', 'gguf', '--json');
    expect(stderr).toBe('');
    expect(code).toBe(0);
    const json = parseValid<{ out: string; export: { types: Record<string, number> }; sizes: { shipped: { format: string; MiB: number } } }>(stdout, 'quantize');
    expect(json.out).toBe(out);
    expect(json.export.types).toEqual({ Q5_1: 224, F16: 2 });
    // What ships is the .gguf file, every byte of it.
    expect(json.sizes.shipped).toMatchObject({ format: 'gguf', MiB: statSync(out).size / 2 ** 20 });
    const again = await cli('quantize', shippedModelDir, '--config', 'b5g32', '--out', out, '--format', 'gguf');
    expect(again.code).toBe(1);
    expect(again.stderr).toMatch(/b5g32\.gguf exists; pass --force/);
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
