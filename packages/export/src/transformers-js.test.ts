// transformers.js (the real package, onnxruntime-node backend) on the layouts the shipped-model test does not
// cover: float16 activations (model_q4f16.onnx) and external data, on a tiny random Llama with an untied lm_head.
import { quantConfig } from '@layerquant/core';
import { hqqQuantizer } from '@layerquant/quantizers';
import { quantizeModel } from '@layerquant/quantizers/node';
import { greedyDecode } from '@layerquant/runtime';
import { tinyConfig, writeModelDirectory } from '@layerquant/runtime/testing';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { onnx } from 'onnx-proto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { exportOnnx } from './export-onnx.js';
import { openOnnxExport } from './onnx-model-dir.js';
import { referenceGreedy, transformersGenerate } from './__fixtures__/greedy-generation.js';

const root = mkdtempSync(join(tmpdir(), 'layerquant-transformers-js-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));
// eos outside the vocabulary's likely picks so that all tokens are generated
const config = tinyConfig({ numLayers: 3, vocabSize: 96, eosTokenId: 95 });
const quantizedDir = join(root, 'quantized');
const PROMPT = [5, 17, 42, 8];
const NEW_TOKENS = 12;

beforeAll(async () => {
  await writeModelDirectory(join(root, 'model'), config, 9);
  await quantizeModel({ modelDir: join(root, 'model'), outDir: quantizedDir, quantizer: hqqQuantizer, configFor: () => quantConfig(4, 16) });
});

describe('transformers.js loads', () => {
  it('an export with external data (model_q4.onnx + model_q4.onnx_data) and generates the reference continuation', async () => {
    const outDir = join(root, 'external');
    await exportOnnx({ modelDir: quantizedDir, outDir, accuracyLevel: 0, externalDataThreshold: 0 });
    expect(await transformersGenerate(outDir, 'q4', PROMPT, NEW_TOKENS)).toEqual(await referenceGreedy(quantizedDir, PROMPT, NEW_TOKENS));
  });

  it('model_q4f16.onnx (float16 activations and cache) and generates what layerquant\'s KV decoder does on the file', async () => {
    const outDir = join(root, 'q4f16');
    const report = await exportOnnx({ modelDir: quantizedDir, outDir, accuracyLevel: 0, activations: 'float16' });
    expect(report.file).toBe('onnx/model_q4f16.onnx');
    const generated = await transformersGenerate(outDir, 'q4f16', PROMPT, NEW_TOKENS);
    const model = await openOnnxExport(outDir);
    expect(model.decoder.cacheType).toBe('float16');
    expect(generated).toEqual(await greedyDecode(model.decoder, PROMPT, { maxNewTokens: NEW_TOKENS }));
    await model.dispose();
    expect(generated).toHaveLength(NEW_TOKENS);
  });
});

// The fused export (GroupQueryAttention needs head_dim % 16 == 0): Llama, Qwen2 with q/k/v biases and tied
// embeddings, Mistral; every matrix HQQ at 2, 4 or 8 bits (so some q/k/v and gate/up share a MatMulNBits, some not).
const FUSED_FAMILIES = {
  llama: tinyConfig({ hiddenSize: 64, headDim: 16, numLayers: 3, vocabSize: 96, eosTokenId: 95 }),
  'qwen2 (biases, tied)': tinyConfig({ modelType: 'qwen2', architecture: 'Qwen2ForCausalLM', hiddenSize: 64, headDim: 16, numKeyValueHeads: 1, tieWordEmbeddings: true, vocabSize: 96, eosTokenId: 95 }),
  mistral: tinyConfig({ modelType: 'mistral', architecture: 'MistralForCausalLM', hiddenSize: 48, headDim: 16, numKeyValueHeads: 4, ropeTheta: 1e6, vocabSize: 96, eosTokenId: 95 }),
};
const MIXED_BITS = [quantConfig(4, 16), quantConfig(4, 16), quantConfig(4, 16), quantConfig(2, 16), quantConfig(8, 16), quantConfig(8, 16), quantConfig(4, 16)];

describe('transformers.js generate() on the fused export', () => {
  for (const [family, familyConfig] of Object.entries(FUSED_FAMILIES)) {
    it(`${family}, mixed 2/4/8-bit: equals layerquant's greedy decode on the file and the dequantized model's`, async () => {
      const modelDir = join(root, `fused-${family}`);
      const quantized = join(root, `fused-${family}-quantized`);
      const outDir = join(root, `fused-${family}-onnx`);
      await writeModelDirectory(modelDir, familyConfig, 4);
      let index = 0;
      await quantizeModel({ modelDir, outDir: quantized, quantizer: hqqQuantizer, configFor: () => MIXED_BITS[index++ % MIXED_BITS.length]! });
      const report = await exportOnnx({ modelDir: quantized, outDir, accuracyLevel: 0 });
      expect(report.operators).toBe('fused');
      // onnx-proto (an independent decoder) reads one GroupQueryAttention per layer and no Softmax.
      const model = onnx.ModelProto.decode(readFileSync(join(outDir, 'onnx', 'model_q4.onnx')));
      const ops = model.graph!.node!.map((n) => n.opType);
      expect(ops.filter((op) => op === 'GroupQueryAttention')).toHaveLength(familyConfig.numLayers);
      expect(ops).not.toContain('Softmax');
      const stacked = model.graph!.node!.filter((n) => n.opType === 'MatMulNBits' && n.name!.includes('+'));
      expect(stacked.length).toBeGreaterThan(0);
      const prompt = [5, 17, 42, 8, 63, 2];
      const generated = await transformersGenerate(outDir, 'q4', prompt, NEW_TOKENS);
      const layerquant = await openOnnxExport(outDir);
      expect(layerquant.decoder.cacheMode).toBe('shared');
      expect(generated).toEqual(await greedyDecode(layerquant.decoder, prompt, { maxNewTokens: NEW_TOKENS }));
      await layerquant.dispose();
      expect(generated).toEqual(await referenceGreedy(quantized, prompt, NEW_TOKENS));
    }, 120_000);
  }
});
