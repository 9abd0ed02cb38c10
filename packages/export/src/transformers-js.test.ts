// transformers.js (the real package, onnxruntime-node backend) on the layouts the shipped-model test does not
// cover: float16 activations (model_q4f16.onnx) and external data, on a tiny random Llama with an untied lm_head.
import { quantConfig } from '@layerquant/core';
import { hqqQuantizer } from '@layerquant/quantizers';
import { openModelWeights, quantizeModel } from '@layerquant/quantizers/node';
import { greedyDecode, loadDecoderWeights, referenceForward } from '@layerquant/runtime';
import { tinyConfig, writeModelDirectory } from '@layerquant/runtime/testing';
import { loadDecoderConfig } from '@layerquant/tensor-io';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { exportOnnx } from './export-onnx.js';
import { openOnnxExport } from './onnx-model-dir.js';

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

async function transformersGenerate(dir: string, dtype: 'q4' | 'q4f16'): Promise<number[]> {
  const { AutoModelForCausalLM, Tensor, env } = await import('@huggingface/transformers');
  env.allowRemoteModels = false;
  const model = await AutoModelForCausalLM.from_pretrained(dir, { dtype, local_files_only: true });
  const output = (await model.generate({
    input_ids: new Tensor('int64', BigInt64Array.from(PROMPT.map(BigInt)), [1, PROMPT.length]),
    attention_mask: new Tensor('int64', new BigInt64Array(PROMPT.length).fill(1n), [1, PROMPT.length]),
    max_new_tokens: NEW_TOKENS,
    do_sample: false,
  })) as InstanceType<typeof Tensor>;
  await model.dispose();
  return Array.from(output.data as BigInt64Array, Number).slice(PROMPT.length);
}

/** Greedy continuation from the float64 reference forward of the dequantized weights (no cache). */
async function referenceGreedy(): Promise<number[]> {
  const weights = await openModelWeights(quantizedDir);
  const dequantized = await loadDecoderWeights(weights, await loadDecoderConfig(quantizedDir));
  await weights.close();
  const sequence = [...PROMPT];
  for (let i = 0; i < NEW_TOKENS; i++) {
    const last = Array.from(referenceForward(dequantized, sequence).slice(-config.vocabSize));
    sequence.push(last.indexOf(Math.max(...last)));
  }
  return sequence.slice(PROMPT.length);
}

describe('transformers.js loads', () => {
  it('an export with external data (model_q4.onnx + model_q4.onnx_data) and generates the reference continuation', async () => {
    const outDir = join(root, 'external');
    await exportOnnx({ modelDir: quantizedDir, outDir, accuracyLevel: 0, externalDataThreshold: 0 });
    expect(await transformersGenerate(outDir, 'q4')).toEqual(await referenceGreedy());
  });

  it('model_q4f16.onnx (float16 activations and cache) and generates what layerquant\'s KV decoder does on the file', async () => {
    const outDir = join(root, 'q4f16');
    const report = await exportOnnx({ modelDir: quantizedDir, outDir, accuracyLevel: 0, activations: 'float16' });
    expect(report.file).toBe('onnx/model_q4f16.onnx');
    const generated = await transformersGenerate(outDir, 'q4f16');
    const model = await openOnnxExport(outDir);
    expect(model.decoder.cacheType).toBe('float16');
    expect(generated).toEqual(await greedyDecode(model.decoder, PROMPT, { maxNewTokens: NEW_TOKENS }));
    await model.dispose();
    expect(generated).toHaveLength(NEW_TOKENS);
  });
});
