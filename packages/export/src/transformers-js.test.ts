// transformers.js (the real package, onnxruntime-node backend) on the layouts the shipped-model test does not
// cover: float16 activations (model_q4f16.onnx) and external data, on a tiny random Llama with an untied lm_head.
import { quantConfig } from '@layerquant/core';
import { hqqQuantizer } from '@layerquant/quantizers';
import { quantizeModel } from '@layerquant/quantizers/node';
import { greedyDecode } from '@layerquant/runtime';
import { tinyConfig, writeModelDirectory } from '@layerquant/runtime/testing';
import { mkdtempSync, rmSync } from 'node:fs';
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
