import { matrixKey, matrixOfTensorName, quantConfig, type QuantConfig, type Quantizer } from '@layerquant/core';
import { hqqQuantizer, rtnQuantizer, type ScaleDtype } from '@layerquant/quantizers';
import { openModelWeights, quantizeModel } from '@layerquant/quantizers/node';
import { loadDecoderWeights, referenceForward } from '@layerquant/runtime';
import { relativeError, tinyConfig, writeModelDirectory } from '@layerquant/runtime/testing';
import { f16BitsToFloat32, loadDecoderConfig, openCheckpoint } from '@layerquant/tensor-io';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { exportOnnx } from './export-onnx.js';
import { UnsupportedExportError, toMatMulNBits } from './matmul-nbits.js';
import { openOnnxExport, summarizeOnnxExport } from './onnx-model-dir.js';

const root = mkdtempSync(join(tmpdir(), 'layerquant-export-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

// hidden 32, ffn 48: group 16 is the smallest MatMulNBits block; every width, rounded and fractional zeros.
const MODELS = {
  llama: tinyConfig(),
  qwen2: tinyConfig({ modelType: 'qwen2', architecture: 'Qwen2ForCausalLM', numKeyValueHeads: 1 }),
  mistral: tinyConfig({ modelType: 'mistral', architecture: 'MistralForCausalLM', numKeyValueHeads: 4, ropeTheta: 1e6 }),
  tied: tinyConfig({ tieWordEmbeddings: true, numLayers: 3 }),
};
const CONFIGS: readonly QuantConfig[] = [quantConfig(2, 16), quantConfig(3, 16), quantConfig(4, 16), quantConfig(8, 16), quantConfig(4, 16, { roundZero: true }), quantConfig(3, 16, { roundZero: true })];
const IDS = [3, 17, 42, 5, 63, 1, 11, 29];

async function quantizedTinyModel(family: keyof typeof MODELS, configFor: (index: number) => QuantConfig | null, quantizer: Quantizer = hqqQuantizer, scaleDtype: ScaleDtype = 'F32'): Promise<string> {
  const modelDir = join(root, `${family}-model`);
  const quantizedDir = join(root, `${family}-quantized-${Math.random().toString(36).slice(2)}`);
  if (!existsSync(modelDir)) await writeModelDirectory(modelDir, MODELS[family], 5);
  let index = 0;
  await quantizeModel({ modelDir, outDir: quantizedDir, quantizer, configFor: () => configFor(index++), scaleDtype });
  return quantizedDir;
}

describe('exportOnnx on tiny random models', () => {
  for (const family of Object.keys(MODELS) as (keyof typeof MODELS)[]) {
    it(`${family}: the exported file equals the float64 forward of the dequantized weights, with and without the cache`, async () => {
      // one matrix in float, the others cycling through 2/3/4/8 bits with fractional and rounded zeros
      const quantizedDir = await quantizedTinyModel(family, (i) => (i === 1 ? null : CONFIGS[i % CONFIGS.length]!));
      const outDir = join(root, `${family}-onnx`);
      const report = await exportOnnx({ modelDir: quantizedDir, outDir, accuracyLevel: 0, scaleType: 'float32' });
      expect(report.file).toBe('onnx/model_q4.onnx');
      expect(readdirSync(outDir).sort()).toEqual(['config.json', 'generation_config.json', 'onnx', 'quantization.json', 'tokenizer.json', 'tokenizer_config.json']);
      const config = await loadDecoderConfig(quantizedDir);
      const weights = await openModelWeights(quantizedDir);
      const dequantized = await loadDecoderWeights(weights, config);
      await weights.close();
      const expected = referenceForward(dequantized, IDS);
      const model = await openOnnxExport(outDir, { threads: 1 });
      expect(relativeError(await model.logits({ ids: IDS }), expected)).toBeLessThan(1e-5);
      const v = config.vocabSize;
      model.decoder.reset();
      await model.decoder.forward(IDS.slice(0, 6));
      const last = await model.decoder.forward(IDS.slice(6));
      expect(relativeError(last, expected.slice(6 * v))).toBeLessThan(1e-5);
      await model.dispose();

      const summary = await summarizeOnnxExport(outDir);
      expect(summary.linearMatrices).toBe(7 * config.numLayers);
      expect(Object.values(summary.matMulNBits).reduce((a, b) => a + b, 0)).toBe(7 * config.numLayers - 1);
      // 3-bit matrices are stored as 4-bit codes, and the report says so
      expect(report.matrices.filter((m) => m.config?.startsWith('b3')).every((m) => m.storedBits === 4)).toBe(true);
      expect(report.notes.some((n) => n.startsWith('b3g16 codes are stored as 4-bit'))).toBe(true);
      const saved = JSON.parse(readFileSync(join(outDir, 'quantization.json'), 'utf8')) as { export: { linearBytes: number }; sqErr: number };
      expect(saved.export.linearBytes).toBe(report.linearBytes);
      expect(saved.sqErr).toBeGreaterThan(0);
    });
  }

  it('8-bit scales (quantize scaleDtype U8) are expanded to the multipliers the checkpoint stands for, exactly; the file equals the float64 forward; the report says so', async () => {
    const quantizedDir = await quantizedTinyModel('llama', (i) => CONFIGS[i % CONFIGS.length]!, hqqQuantizer, 'U8');
    const outDir = join(root, 'llama-u8-onnx');
    const report = await exportOnnx({ modelDir: quantizedDir, outDir, accuracyLevel: 0, scaleType: 'float32' });
    expect(report.notes.some((n) => /^\d+ matrices store 8-bit scales and zeros \(scale-dtype U8\).*float32 exactly/.test(n))).toBe(true);
    const weights = await openModelWeights(quantizedDir);
    const raw = await openCheckpoint(quantizedDir);
    try {
      if (!('readQuantized' in weights)) throw new Error('expected a quantized checkpoint');
      let checked = 0;
      for (const name of Object.keys(weights.metadata.tensors)) {
        // float64 reference: fround(minimum + code * step) of the stored 8-bit codes and fp16 (minimum, step) per 128 groups
        const codes = await raw.readRaw(`${name}.scale`);
        const metaBytes = await raw.readRaw(`${name}.scale_meta`);
        const meta = f16BitsToFloat32(new Uint16Array(metaBytes.slice().buffer));
        const expected = Float32Array.from(codes, (c, i) => meta[2 * Math.floor(i / 128)]! + c * meta[2 * Math.floor(i / 128) + 1]!);
        const multipliers = (await weights.readScaleMultipliers(name))!;
        expect([...multipliers]).toEqual([...expected]);
        const packed = toMatMulNBits(await weights.readQuantized(name), { multipliers });
        expect([...(packed.weight.scales as Float32Array)]).toEqual([...expected]);
        checked++;
      }
      expect(checked).toBe(7 * MODELS.llama.numLayers);
      const dequantized = await loadDecoderWeights(weights, await loadDecoderConfig(quantizedDir));
      const model = await openOnnxExport(outDir, { threads: 1 });
      expect(relativeError(await model.logits({ ids: IDS }), referenceForward(dequantized, IDS))).toBeLessThan(1e-5);
      await model.dispose();
    } finally {
      await Promise.all([weights.close(), raw.close()]);
    }
  });

  it('external data: the weights go to model_q4.onnx_data, config.json says so, onnxruntime reads the same logits', async () => {
    const quantizedDir = await quantizedTinyModel('llama', () => quantConfig(4, 16));
    const inline = join(root, 'inline');
    const external = join(root, 'external');
    const whole = await exportOnnx({ modelDir: quantizedDir, outDir: inline, accuracyLevel: 0 });
    const report = await exportOnnx({ modelDir: quantizedDir, outDir: external, accuracyLevel: 0, externalDataThreshold: 0 });
    // tensors of 1 KiB and more move out: here the embeddings and lm_head
    expect(report.externalDataBytes).toBeGreaterThanOrEqual(2 * 64 * 32 * 4);
    expect(report.fileBytes + report.externalDataBytes).toBeLessThan(whole.fileBytes + 4096);
    expect(existsSync(join(external, 'onnx', 'model_q4.onnx_data'))).toBe(true);
    const config = JSON.parse(readFileSync(join(external, 'config.json'), 'utf8')) as Record<string, { use_external_data_format?: unknown }>;
    expect(config['transformers.js_config']!.use_external_data_format).toEqual({ 'model_q4.onnx': 1 });
    const a = await openOnnxExport(inline);
    const b = await openOnnxExport(external);
    expect(Array.from(await b.logits({ ids: IDS }))).toEqual(Array.from(await a.logits({ ids: IDS })));
    await a.dispose();
    await b.dispose();
  });

  it('strided groups (axis 0) and blocks MatMulNBits cannot hold are typed errors that name the tensor; nothing is written', async () => {
    const strided = await quantizedTinyModel('llama', () => quantConfig(4, 16, { axis: 0 }));
    const out = join(root, 'strided-onnx');
    const error = await exportOnnx({ modelDir: strided, outDir: out }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(UnsupportedExportError);
    expect((error as Error).message).toMatch(/model\.layers\.0\.self_attn\.q_proj\.weight.*axis 0.*--axis 1/);
    expect(existsSync(out)).toBe(false);
    const small = await quantizedTinyModel('llama', () => quantConfig(4, 8));
    await expect(exportOnnx({ modelDir: small, outDir: out })).rejects.toThrow(/group size 8 cannot be a MatMulNBits block/);
  });

  it('integer zeros (RTN with roundZero) need no correction: fewer bytes, same exactness', async () => {
    // HQQ's solver makes rounded zeros fractional again, so only RTN keeps them integer
    const quantizedDir = await quantizedTinyModel('mistral', () => quantConfig(4, 16, { roundZero: true }), rtnQuantizer);
    const outDir = join(root, 'rtn-round-zero');
    const report = await exportOnnx({ modelDir: quantizedDir, outDir, accuracyLevel: 0, scaleType: 'float32' });
    expect(report.matrices.filter((m) => m.zeroCorrection)).toEqual([]);
    // per [N, K]: 4-bit codes, an fp32 scale per group of 16, 4-bit zero points packed per row into whole bytes
    const linear = report.matrices.filter((m) => matrixOfTensorName(m.name) !== undefined);
    // the embedding units are listed too, in float
    expect(report.matrices.filter((m) => !linear.includes(m)).map((m) => [m.name, m.config])).toEqual([['model.embed_tokens.weight', null], ['lm_head.weight', null]]);
    const bytes = linear.reduce((sum, { shape: [n, k] }) => sum + (n * k) / 2 + n * (k / 16) * 4 + n * Math.ceil(k / 16 / 2), 0);
    expect(report.linearBytes).toBe(bytes);
    const config = await loadDecoderConfig(quantizedDir);
    const weights = await openModelWeights(quantizedDir);
    const expected = referenceForward(await loadDecoderWeights(weights, config), IDS);
    await weights.close();
    const model = await openOnnxExport(outDir);
    expect(relativeError(await model.logits({ ids: IDS }), expected)).toBeLessThan(1e-5);
    await model.dispose();
  });

  it('matrix keys in the report follow the checkpoint', async () => {
    const quantizedDir = await quantizedTinyModel('qwen2', () => quantConfig(2, 16));
    const report = await exportOnnx({ modelDir: quantizedDir, outDir: join(root, 'keys') });
    expect(report.matrices.map((m) => m.name)).toContain(`model.layers.1.mlp.down_proj.weight`);
    expect(matrixKey(1, 'mlp.down_proj')).toBe('1.mlp.down_proj');
    expect(report.accuracyLevel).toBe(4);
  });
});
