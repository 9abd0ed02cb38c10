// transformers.js (the real package, onnxruntime-node backend) on the layouts the shipped-model test does not
// cover: float16 activations (model_q4f16.onnx) and external data, on a tiny random Llama with an untied lm_head.
import { configName, quantConfig } from '@layerquant/core';
import { hqqQuantizer } from '@layerquant/quantizers';
import { quantizeModel } from '@layerquant/quantizers/node';
import { greedyDecode } from '@layerquant/runtime';
import { relativeError, tinyConfig, writeModelDirectory } from '@layerquant/runtime/testing';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { onnx } from 'onnx-proto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { exportOnnx } from './export-onnx.js';
import { openOnnxExport } from './onnx-model-dir.js';
import { referenceGreedy, referenceLastLogits, transformersGenerate, transformersLastLogits, transformersPerplexity } from './__fixtures__/greedy-generation.js';
import { perplexity } from '@layerquant/perplexity';

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
const EMBED_CONFIG = quantConfig(4, 16, { roundZero: true });
const HEAD_CONFIG = quantConfig(8, 16, { roundZero: true });
const MIXED_BITS = [quantConfig(4, 16), quantConfig(4, 16), quantConfig(4, 16), quantConfig(2, 16), quantConfig(8, 16), quantConfig(8, 16), quantConfig(4, 16)];

describe('transformers.js generate() on the fused export', () => {
  for (const [family, familyConfig] of Object.entries(FUSED_FAMILIES)) {
    it(`${family}, mixed 2/4/8-bit, quantized embeddings and lm_head: equals layerquant's greedy decode on the file and the dequantized model's`, async () => {
      const modelDir = join(root, `fused-${family}`);
      const quantized = join(root, `fused-${family}-quantized`);
      const outDir = join(root, `fused-${family}-onnx`);
      await writeModelDirectory(modelDir, familyConfig, 4);
      let index = 0;
      // embed_tokens (GatherBlockQuantized, integer zeros; a tied one serves lm_head with the same codes) and an
      // untied lm_head (MatMulNBits) quantized too, as an allocation for the shipped file makes them.
      await quantizeModel({
        modelDir,
        outDir: quantized,
        quantizer: hqqQuantizer,
        embeddingUnits: true,
        configFor: (_key, unit) => (unit.module === 'embed_tokens' ? EMBED_CONFIG : unit.module === 'lm_head' ? HEAD_CONFIG : MIXED_BITS[index++ % MIXED_BITS.length]!),
      });
      const report = await exportOnnx({ modelDir: quantized, outDir, accuracyLevel: 0 });
      expect(report.operators).toBe('fused');
      // onnx-proto (an independent decoder) reads one GroupQueryAttention per layer and no Softmax.
      const model = onnx.ModelProto.decode(readFileSync(join(outDir, 'onnx', 'model_q4.onnx')));
      const ops = model.graph!.node!.map((n) => n.opType);
      expect(ops.filter((op) => op === 'GroupQueryAttention')).toHaveLength(familyConfig.numLayers);
      expect(ops).not.toContain('Softmax');
      const stacked = model.graph!.node!.filter((n) => n.opType === 'MatMulNBits' && n.name!.includes('+'));
      expect(stacked.length).toBeGreaterThan(0);
      expect(ops).toContain('GatherBlockQuantized');
      expect(report.matrices.find((m) => m.name === 'model.embed_tokens.weight')?.config).toBe(configName(EMBED_CONFIG));
      const prompt = [5, 17, 42, 8, 63, 2];
      const generated = await transformersGenerate(outDir, 'q4', prompt, NEW_TOKENS);
      const layerquant = await openOnnxExport(outDir);
      expect(layerquant.decoder.cacheMode).toBe('shared');
      expect(generated).toEqual(await greedyDecode(layerquant.decoder, prompt, { maxNewTokens: NEW_TOKENS }));
      // Perplexity from transformers.js' logits (float64 sums here) equals layerquant's evaluation of the directory.
      const text = Array.from({ length: 48 }, (_, i) => (i * 37 + 11) % (familyConfig.vocabSize - 1));
      const ours = await perplexity(layerquant, text, { seqlen: text.length });
      expect(ours.windows).toBe(1);
      expect(Math.abs(ours.ppl - (await transformersPerplexity(outDir, 'q4', text))) / ours.ppl).toBeLessThan(1e-5);
      await layerquant.dispose();
      expect(generated).toEqual(await referenceGreedy(quantized, prompt, NEW_TOKENS));
    }, 120_000);
  }
});

// A plain checkpoint is exported in float: onnx/model.onnx (fp32) or onnx/model_fp16.onnx (fp16 activations, cache
// and weights), the files transformers.js loads for dtype 'fp32' / 'fp16'. Llama with an untied lm_head, and Qwen2
// with q/k/v biases and tied embeddings stored in F16 (the held-out layout).
const FLOAT_FAMILIES = {
  llama: { config: FUSED_FAMILIES.llama, dtype: 'F32' },
  'qwen2 (biases, tied, F16)': { config: tinyConfig({ modelType: 'qwen2', architecture: 'Qwen2ForCausalLM', hiddenSize: 64, headDim: 16, attentionBias: true, tieWordEmbeddings: true, vocabSize: 96, eosTokenId: 95 }), dtype: 'F16' },
} as const;

describe('transformers.js generate() on the float export of a plain checkpoint', () => {
  for (const [family, { config: familyConfig, dtype: storage }] of Object.entries(FLOAT_FAMILIES)) {
    const modelDir = join(root, `float-${family}`);
    beforeAll(() => writeModelDirectory(modelDir, familyConfig, { seed: 5, dtype: storage }));
    for (const activations of ['float32', 'float16'] as const) {
      const dtype = activations === 'float16' ? 'fp16' : 'fp32';
      it(`${family}, dtype ${dtype}: logits near the float64 reference; generate() equals layerquant's greedy decode on the file`, async () => {
        const outDir = join(root, `float-${family}-${dtype}`);
        const report = await exportOnnx({ modelDir, outDir, activations });
        expect(report.file).toBe(dtype === 'fp16' ? 'onnx/model_fp16.onnx' : 'onnx/model.onnx');
        expect(report.dtype).toBe(dtype);
        expect(report.notes.join('\n')).toMatch(/a float export \(no matrix is quantized\)/);
        expect((JSON.parse(readFileSync(join(outDir, 'config.json'), 'utf8')) as { 'transformers.js_config': { dtype: string } })['transformers.js_config'].dtype).toBe(dtype);
        const prompt = [5, 17, 42, 8, 63, 2];
        // fp16 rounds activations and weights to 11 significant bits: about 1e-3 relative, far above fp32's 1e-6.
        expect(relativeError(await transformersLastLogits(outDir, dtype, prompt), await referenceLastLogits(modelDir, prompt))).toBeLessThan(dtype === 'fp32' ? 1e-5 : 5e-3);
        const generated = await transformersGenerate(outDir, dtype, prompt, NEW_TOKENS);
        expect(generated).toHaveLength(NEW_TOKENS);
        const layerquant = await openOnnxExport(outDir);
        expect(generated).toEqual(await greedyDecode(layerquant.decoder, prompt, { maxNewTokens: NEW_TOKENS }));
        await layerquant.dispose();
        if (dtype === 'fp32') expect(generated).toEqual(await referenceGreedy(modelDir, prompt, NEW_TOKENS));
      });
    }
  }
});
