import { readGgufHeader } from '@layerquant/gguf/node';
import { tinyConfig, writeModelDirectory } from '@layerquant/runtime/testing';
import { mkdtempSync, readFileSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cli } from './run-cli.js';

/**
 * quantize --format onnx --target-size: the allocation spends the bytes of the file a user ships. The oracle is the
 * file system: every byte under onnx/ (graph and external data) is summed here and held against the target.
 */
const scratch = mkdtempSync(join(tmpdir(), 'lq-target-size-'));
const model = join(scratch, 'model');

/** Every byte of the shipped files: everything under `<out>/onnx`. */
function onnxBytes(out: string): number {
  const dir = join(out, 'onnx');
  return readdirSync(dir).reduce((sum, name) => sum + statSync(join(dir, name)).size, 0);
}

beforeAll(async () => {
  // Untied lm_head, GQA, two layers; K = 128 and 256 take every MatMulNBits block size.
  await writeModelDirectory(model, tinyConfig({ hiddenSize: 128, intermediateSize: 256, headDim: 32, numLayers: 2, tieWordEmbeddings: false }), { seed: 5 });
});
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

describe('quantize --format onnx --target-size', () => {
  it('below the smallest file the ladder makes: one typed line naming that size, nothing written', async () => {
    const out = join(scratch, 'too-small');
    const { code, stdout, stderr } = await cli('quantize', model, '--method', 'mxq', '--format', 'onnx', '--target-size', '0.01', '--out', out);
    expect(code).toBe(1);
    expect(stdout).toBe('');
    expect(stderr.trim().split('\n')).toHaveLength(1);
    expect(stderr).toMatch(/--target-size/);
    expect(stderr).toMatch(/smallest/);
    expect(() => readdirSync(join(out, 'onnx'))).toThrow();
    // Only the statistics cache stays in --out; a rerun with a feasible target needs no --force.
    const again = await cli('quantize', model, '--method', 'mxq', '--format', 'onnx', '--target-bpw', '12', '--out', out);
    expect(again.code, again.stderr).toBe(0);
  });

  it('writes an export of at most the target and within 1% of it; the report predicts the bytes on disk', async () => {
    // The smallest and the largest file of the ladder, from the error of an infeasible target and a uniform export.
    const small = await cli('quantize', model, '--method', 'mxq', '--format', 'onnx', '--target-size', '0.01', '--out', join(scratch, 'probe'));
    const smallest = Number(/([0-9.]+) MiB/.exec(small.stderr.slice(small.stderr.indexOf('smallest')))?.[1]);
    expect(smallest).toBeGreaterThan(0);
    const eight = join(scratch, 'b8');
    expect((await cli('quantize', model, '--method', 'rtn', '--config', 'b8g32-int', '--format', 'onnx', '--out', eight)).code).toBe(0);
    const largest = onnxBytes(eight) / 2 ** 20;
    expect(largest).toBeGreaterThan(smallest);
    for (const fraction of [0.3, 0.7]) {
      const targetMiB = Number((smallest + fraction * (largest - smallest)).toFixed(4));
      const out = join(scratch, `target-${fraction}`);
      const { code, stdout, stderr } = await cli('quantize', model, '--method', 'mxq', '--format', 'onnx', '--target-size', String(targetMiB), '--out', out, '--json');
      expect(code, stderr).toBe(0);
      const bytes = onnxBytes(out);
      expect(bytes).toBeLessThanOrEqual(targetMiB * 2 ** 20);
      expect(bytes).toBeGreaterThanOrEqual(0.99 * targetMiB * 2 ** 20);
      const shipped = (JSON.parse(stdout) as { sizes: { shipped: { MiB: number; bitsPerWeight: number; predictedMiB: number; targetMiB: number; format: string } } }).sizes.shipped;
      // inspect reads the same file: the same bytes and bits per linear weight (a quantized lm_head is not a linear matrix).
      const inspected = await cli('inspect', out, '--json');
      expect(inspected.code, inspected.stderr).toBe(0);
      const inspectedShipped = (JSON.parse(inspected.stdout) as { sizes: { shipped: { MiB: number; bitsPerWeight: number } } }).sizes.shipped;
      expect(inspectedShipped.MiB).toBeCloseTo(shipped.MiB, 9);
      expect(inspectedShipped.bitsPerWeight).toBeCloseTo(shipped.bitsPerWeight, 9);
      expect(shipped.format).toBe('onnx');
      expect(shipped.MiB * 2 ** 20).toBeCloseTo(bytes, 0);
      expect(Math.abs(shipped.predictedMiB - shipped.MiB) / shipped.MiB).toBeLessThan(0.005);
      expect(shipped.targetMiB).toBeCloseTo(targetMiB, 3);
      // allocate --target-format onnx on the statistics the run cached beside it: the same allocation and file size.
      const [key] = readdirSync(join(out, 'stats')).filter((name) => /^[0-9a-f]{16}$/.test(name));
      const allocated = await cli('allocate', '--stats', join(out, 'stats', key!), '--model', model, '--method', 'mxq', '--target-format', 'onnx', '--target-size', String(targetMiB), '--json');
      expect(allocated.code, allocated.stderr).toBe(0);
      const allocatedShipped = (JSON.parse(allocated.stdout) as { sizes: { shipped: { MiB: number } } }).sizes.shipped;
      expect(allocatedShipped.MiB).toBeCloseTo(shipped.predictedMiB, 9);
    }
  });

  it('--embedding-configs: float keeps embed_tokens and lm_head float, outside the allocation; a list is their ladder', async () => {
    // A vocabulary of 4096: the float embeddings (fp16: 2 MiB) weigh more than the layers.
    const wide = join(scratch, 'wide-vocabulary');
    await writeModelDirectory(wide, tinyConfig({ hiddenSize: 128, intermediateSize: 256, headDim: 32, numLayers: 2, vocabSize: 4096, tieWordEmbeddings: false }), { seed: 5 });
    const run = async (name: string, target: string, ...args: string[]) => {
      const out = join(scratch, name);
      const result = await cli('quantize', wide, '--method', 'mxq', '--format', 'onnx', '--embedding-dtype', 'f16', '--target-size', target, ...args, '--out', out, '--json');
      return { out, result, allocation: result.code === 0 ? (JSON.parse(result.stdout) as { allocation: Record<string, string | null> }).allocation : undefined };
    };
    // 1.6 MiB: only quantized embeddings fit. By default MXQ picks their configs; with a list, from it; float is refused.
    const plain = await run('emb-default', '1.6');
    expect(plain.result.code, plain.result.stderr).toBe(0);
    expect(plain.allocation!.embed_tokens).toMatch(/^b\d/);
    // The default run's tables hold the embeddings at every native config: the list narrows them.
    const [key] = readdirSync(join(plain.out, 'stats')).filter((name) => /^[0-9a-f]{16}$/.test(name));
    const tables = join(plain.out, 'stats', key!);
    const listed = await run('emb-b8', '1.6', '--embedding-configs', 'b8g32-int', '--stats', tables);
    expect(listed.result.code, listed.result.stderr).toBe(0);
    expect([listed.allocation!.embed_tokens, listed.allocation!.lm_head]).toEqual(['b8g32-int', 'b8g32-int']);
    expect(onnxBytes(listed.out)).toBeLessThanOrEqual(1.6 * 2 ** 20);
    const allocated = await cli('allocate', '--stats', tables, '--model', wide, '--method', 'mxq', '--target-format', 'onnx', '--target-size', '1.6', '--embedding-configs', 'b8g32-int', '--json');
    expect(allocated.code, allocated.stderr).toBe(0);
    const allocatedMatrices = (JSON.parse(allocated.stdout) as { allocation: Record<string, string | null> }).allocation;
    expect([allocatedMatrices.embed_tokens, allocatedMatrices.lm_head]).toEqual(['b8g32-int', 'b8g32-int']);
    const tooSmall = await run('emb-float-small', '1.6', '--embedding-configs', 'float');
    expect(tooSmall.result.code).toBe(1);
    expect(tooSmall.result.stderr).toMatch(/smallest feasible budget is 2\.\d+ MiB/);
    // 2.6 MiB with float embeddings: they are not units of the allocation, and the file holds them in fp16.
    const kept = await run('emb-float', '2.6', '--embedding-configs', 'float');
    expect(kept.result.code, kept.result.stderr).toBe(0);
    expect(Object.keys(kept.allocation!)).not.toContain('embed_tokens');
    expect(Object.keys(kept.allocation!)).not.toContain('lm_head');
    expect(onnxBytes(kept.out)).toBeLessThanOrEqual(2.6 * 2 ** 20);
    expect(onnxBytes(kept.out)).toBeGreaterThan(2 * 4096 * 128 * 2);
    // Its tables hold no embedding rows: asked for an embedding ladder, they are refused by what they lack, with the
    // command that measures it; that command's tables then serve.
    const [keptKey] = readdirSync(join(kept.out, 'stats')).filter((name) => /^[0-9a-f]{16}$/.test(name));
    const noEmbeddings = await run('emb-b8-no-rows', '1.6', '--embedding-configs', 'b8g32-int', '--stats', join(kept.out, 'stats', keptKey!));
    expect(noEmbeddings.result.code).toBe(1);
    expect(noEmbeddings.result.stderr).toMatch(/lacks what the methods need \(fnorm\.csv: embed_tokens at b8g32-int;.* and embed_tokens at b8g32-int, lm_head at b8g32-int\); run `layerquant sensitivity .*--target-format <format> --embedding-configs b8g32-int`/);
    const measured = join(scratch, 'emb-b8-tables');
    const sensitivity = await cli('sensitivity', wide, '--metrics', 'fnorm', '--target-format', 'onnx', '--embedding-configs', 'b8g32-int', '--blocks', '1', '--out', measured);
    expect(sensitivity.code, sensitivity.stderr).toBe(0);
    const fromThem = await run('emb-b8-from-tables', '1.6', '--embedding-configs', 'b8g32-int', '--stats', measured);
    expect(fromThem.result.code, fromThem.result.stderr).toBe(0);
    expect([fromThem.allocation!.embed_tokens, fromThem.allocation!.lm_head]).toEqual(['b8g32-int', 'b8g32-int']);
  });

  it('refuses what the format cannot store, and a target without a format, before any work', async () => {
    const cases: [string[], RegExp][] = [
      [['--method', 'mxq', '--format', 'onnx', '--target-size', '1', '--configs', 'b3g64-int,b4g64-int'], /--configs.*b3g64-int.*3-bit/],
      [['--method', 'mxq', '--format', 'onnx', '--target-size', '1', '--configs', 'b4g48-int'], /--configs.*b4g48-int/],
      [['--method', 'mxq', '--target-size', '1'], /--target-size.*--format onnx or --format gguf/],
      [['--method', 'mxq', '--format', 'onnx', '--target-size', '1', '--budget', '3'], /--budget.*not both/],
      [['--method', 'mxq', '--format', 'onnx', '--target-size', '1', '--embedding-configs', 'b3g64-int'], /--embedding-configs.*b3g64-int.*stores model\.embed_tokens\.weight natively as .*b4g32-int/],
      [['--method', 'rtn', '--config', 'b4g32-int', '--format', 'onnx', '--embedding-configs', 'float'], /--embedding-configs.*an allocation to a shipped file/],
    ];
    for (const [args, message] of cases) {
      const out = join(scratch, 'refused');
      const { code, stderr } = await cli('quantize', model, ...args, '--out', out);
      expect(code, args.join(' ')).toBe(1);
      expect(stderr).toMatch(message);
      expect(() => statSync(out)).toThrow();
    }
  });
});

describe('quantize --format gguf --target-size', () => {
  // Rows of 256 and 512: whole super-blocks, so every llama.cpp type of the ggml quantizer is on the ladder. Its
  // test tokenizer has no pre-tokenizer llama.cpp names: --tokenizer-pre gives it (checked before any work).
  const wide = join(scratch, 'wide');
  beforeAll(async () => {
    await writeModelDirectory(wide, tinyConfig({ hiddenSize: 256, intermediateSize: 512, headDim: 64, numLayers: 2, tieWordEmbeddings: false }), { seed: 6 });
  });

  it('the ggml quantizer allocates llama.cpp types to the .gguf file\'s bytes: at most the target, within 1%, as predicted', async () => {
    type Shipped = { MiB: number; predictedMiB: number; targetMiB: number; format: string };
    const statsCache = join(scratch, 'ggml-stats');
    const sizes: number[] = [];
    // the ladder's files run from 0.39 MiB (Q2_K and F32 norms) to 1.33 MiB (Q8_0)
    for (const targetMiB of [0.6]) {
      const out = join(scratch, `ggml-${targetMiB}.gguf`);
      const { code, stdout, stderr } = await cli('quantize', wide, '--quantizer', 'ggml', '--method', 'mxq', '--format', 'gguf', '--tokenizer-pre', 'gpt-2', '--target-size', String(targetMiB), '--stats-cache', statsCache, '--out', out, '--json');
      expect(code, stderr).toBe(0);
      const json = JSON.parse(stdout) as { sizes: { shipped: Shipped }; export: { types: Record<string, number> } };
      const bytes = statSync(out).size;
      expect(bytes).toBeLessThanOrEqual(targetMiB * 2 ** 20);
      expect(bytes).toBeGreaterThanOrEqual(0.99 * targetMiB * 2 ** 20);
      expect(json.sizes.shipped).toMatchObject({ format: 'gguf', MiB: bytes / 2 ** 20, predictedMiB: bytes / 2 ** 20, targetMiB: Math.floor(targetMiB * 2 ** 20) / 2 ** 20 });
      // llama.cpp's types only (k-quants among them), embeddings and output allocated too
      for (const type of Object.keys(json.export.types)) expect(['Q2_K', 'Q3_K', 'Q4_0', 'Q4_K', 'Q5_0', 'Q5_K', 'Q6_K', 'Q8_0', 'F32']).toContain(type);
      expect(Object.keys(json.export.types).some((t) => t.endsWith('_K'))).toBe(true);
      sizes.push(bytes);
      // nothing left beside the file (the statistics are where --stats-cache says)
      expect(readdirSync(scratch).filter((f) => f.includes(`ggml-${targetMiB}`))).toEqual([`ggml-${targetMiB}.gguf`]);
    }
    // allocate --target-format gguf on the cached statistics: the same allocation, the written file's bytes
    const [key] = readdirSync(statsCache).filter((name) => /^[0-9a-f]{16}$/.test(name));
    const allocated = await cli('allocate', '--stats', join(statsCache, key!), '--model', wide, '--quantizer', 'ggml', '--method', 'mxq', '--target-format', 'gguf', '--tokenizer-pre', 'gpt-2', '--target-size', '0.6', '--json');
    expect(allocated.code, allocated.stderr).toBe(0);
    expect((JSON.parse(allocated.stdout) as { sizes: { shipped: { MiB: number; format: string } } }).sizes.shipped).toMatchObject({ format: 'gguf', MiB: sizes[0]! / 2 ** 20 });
  });

  it('matrices whose rows are not whole super-blocks get their own ladder (legacy blocks), measured and allocated as such', async () => {
    // down_proj has rows of 320: no k-quant holds them, so its ladder is Q4_0, Q4_1, Q5_0, Q5_1 and Q8_0 (as llama.cpp
    // itself falls back); every other matrix takes the k-quants. The statistics that measure per config: fnorm (mxq),
    // the block-output error (measured) and the end-to-end ΔKLD (kld, its additive solution).
    const narrow = join(scratch, 'narrow');
    await writeModelDirectory(narrow, tinyConfig({ hiddenSize: 256, intermediateSize: 320, headDim: 64, numLayers: 2, tieWordEmbeddings: false, maxPositionEmbeddings: 512 }), { seed: 7 });
    for (const method of ['mxq', 'measured', 'kld']) {
      const out = join(scratch, `narrow-${method}.gguf`);
      const { code, stdout, stderr } = await cli('quantize', narrow, '--quantizer', 'ggml', '--method', method, ...(method === 'kld' ? ['--no-refine'] : []), '--blocks', '1', '--format', 'gguf', '--tokenizer-pre', 'gpt-2', '--target-size', '0.55', '--out', out, '--json');
      expect(code, stderr).toBe(0);
      const bytes = statSync(out).size;
      expect(bytes).toBeLessThanOrEqual(0.55 * 2 ** 20);
      expect(bytes).toBeGreaterThanOrEqual(0.99 * 0.55 * 2 ** 20);
      expect((JSON.parse(stdout) as { sizes: { shipped: { predictedMiB: number } } }).sizes.shipped.predictedMiB).toBe(bytes / 2 ** 20);
      const header = await readGgufHeader(out);
      const typeOf = (pattern: RegExp) => new Set(header.tensors.filter((t) => pattern.test(t.name)).map((t) => t.type.name));
      for (const type of typeOf(/ffn_down/)) expect(['Q4_0', 'Q4_1', 'Q5_0', 'Q5_1', 'Q8_0'], method).toContain(type);
      expect([...typeOf(/attn_|ffn_gate|ffn_up/)].some((t) => t.endsWith('_K')), method).toBe(true);
    }
  });

  it('sensitivity --target-format gguf measures each module at its own ladder and the embeddings, and quantize allocates from that directory', async () => {
    // down_proj has rows of 320: without the format's module ladders the ggml quantizer's k-quants cannot take it
    const narrow = join(scratch, 'narrow-sensitivity');
    await writeModelDirectory(narrow, tinyConfig({ hiddenSize: 256, intermediateSize: 320, headDim: 64, numLayers: 2, tieWordEmbeddings: false, maxPositionEmbeddings: 512 }), { seed: 8 });
    const stats = join(scratch, 'narrow-stats');
    const plain = await cli('sensitivity', narrow, '--quantizer', 'ggml', '--metrics', 'fnorm', '--blocks', '1', '--out', join(scratch, 'narrow-plain'));
    expect(plain.code).toBe(1);
    expect(plain.stderr).toMatch(/layerquant: error: .*llama.cpp type/);
    const measured = await cli('sensitivity', narrow, '--quantizer', 'ggml', '--target-format', 'gguf', '--tokenizer-pre', 'gpt-2', '--metrics', 'fnorm', '--blocks', '1', '--out', stats);
    expect(measured.code, measured.stderr).toBe(0);
    const rows = readFileSync(join(stats, 'fnorm.csv'), 'utf8').trim().split('\n').slice(1).map((line) => line.split(','));
    const configsOf = (module: string) => new Set(rows.filter((r) => r[1] === module).map((r) => `${r[2]}g${r[3]}`));
    // legacy blocks only for down_proj (Q4_0/Q4_1, Q5_0/Q5_1, Q8_0: 4, 5 and 8 bits in groups of 32); Q2_K's 2 bits elsewhere
    expect(configsOf('mlp.down_proj')).toEqual(new Set(['4g32', '5g32', '8g32']));
    expect(configsOf('mlp.up_proj').has('2g16')).toBe(true);
    expect(configsOf('embed_tokens').size).toBeGreaterThan(0);
    expect(configsOf('lm_head').size).toBeGreaterThan(0);
    const out = join(scratch, 'narrow-from-stats.gguf');
    const quantized = await cli('quantize', narrow, '--quantizer', 'ggml', '--method', 'mxq', '--format', 'gguf', '--tokenizer-pre', 'gpt-2', '--target-size', '0.55', '--stats', stats, '--out', out);
    expect(quantized.code, quantized.stderr).toBe(0);
    expect(statSync(out).size).toBeLessThanOrEqual(0.55 * 2 ** 20);
    expect(statSync(out).size).toBeGreaterThanOrEqual(0.99 * 0.55 * 2 ** 20);
  });

  it('refuses a quantizer with no GGUF blocks, type options with an allocation, and non-f32 scales for ggml', async () => {
    const cases: [string[], RegExp][] = [
      [['--quantizer', 'baq', '--calib', join(scratch, 'none.txt'), '--method', 'mxq', '--format', 'gguf', '--target-size', '1'], /"baq" stores codes no GGUF block holds/],
      [['--quantizer', 'ggml', '--method', 'mxq', '--format', 'gguf', '--target-size', '1', '--gguf-type', 'Q4_K'], /--gguf-type.*chooses each matrix's type/],
      [['--quantizer', 'ggml', '--config', 'b4g32', '--scale-dtype', 'f16'], /--scale-dtype.*f16.*exact block multipliers/],
      [['--quantizer', 'hqq', '--method', 'mxq', '--format', 'gguf', '--target-size', '1', '--configs', 'b2g64'], /--configs.*b2g64/],
    ];
    for (const [args, message] of cases) {
      const out = join(scratch, 'refused-gguf');
      const format = args.includes('--format') ? ['--tokenizer-pre', 'gpt-2', '--out', `${out}.gguf`] : ['--out', out];
      const { code, stderr } = await cli('quantize', wide, ...args, ...format);
      expect(code, args.join(' ')).toBe(1);
      expect(stderr).toMatch(message);
      expect(() => statSync(`${out}.gguf`)).toThrow();
    }
  });
});
