import { LINEAR_MODULES, matrixKey, matrixTensorName, seededRandom, type DecoderConfig, type InputHessian } from '@layerquant/core';
import type { LinearModule } from '@layerquant/core';
import type { ModelMatrix } from '@layerquant/quantizers';
import { loadDecoderBlocks, referenceForward, type ReferenceLinearInput } from '@layerquant/runtime';
import { loadDecoderWeights, withOverrides } from '@layerquant/runtime/graph';
import { randomDecoderSource, relativeError, tinyConfig } from '@layerquant/runtime/testing';
import { describe, expect, it } from 'vitest';
import { LINEAR_INPUT, createSequentialCalibration } from './hessians.js';

const configs: Record<string, DecoderConfig> = {
  llama: tinyConfig({ numLayers: 3 }),
  'qwen2 (q/k/v biases, tied embeddings)': tinyConfig({ modelType: 'qwen2', architecture: 'Qwen2ForCausalLM', attentionBias: true, tieWordEmbeddings: true }),
};

describe('createSequentialCalibration', () => {
  for (const [name, config] of Object.entries(configs)) {
    it(`${name}: each matrix's Hessian is 2 X^T X / N of the inputs it sees with every matrix before it quantized (float64 reference forward)`, async () => {
      const source = randomDecoderSource(config, 5);
      const weights = await loadDecoderWeights(source, config);
      const model = await loadDecoderBlocks(source, config);
      const blocks = 3;
      const seqlen = 8;
      const random = seededRandom(9);
      const ids = Int32Array.from({ length: blocks * seqlen }, () => Math.floor(random() * config.vocabSize));
      const calibration = createSequentialCalibration(model, { ids, blocks, seqlen }, { batchSize: 2 });
      // Every matrix in quantization order; "quantized" here is a deterministic perturbation, and one matrix stays float.
      const order: ModelMatrix[] = [];
      for (let layer = 0; layer < config.numLayers; layer++) {
        for (const module of LINEAR_MODULES) {
          const name = matrixTensorName(layer, module);
          const shape = model.shapes.get(name)!;
          order.push({ key: matrixKey(layer, module), name, layer, module, shape: [shape[0]!, shape[1]!] });
        }
      }
      const kept = matrixKey(1, 'self_attn.k_proj');
      const given = new Map<string, InputHessian>();
      const replaced = new Map<string, Float32Array>();
      for (const matrix of order) {
        const context = await calibration.context(matrix);
        given.set(matrix.key, context.hessian!);
        if (matrix.key === kept) {
          calibration.done(matrix, null);
          continue;
        }
        const w = weights.tensors.get(matrix.name)!;
        const dq = Float32Array.from(w, (v, i) => v * (1 + 0.2 * Math.sin(i + matrix.layer)));
        replaced.set(matrix.name, dq);
        calibration.done(matrix, dq);
      }
      // q/k/v share one Hessian object, as do gate/up
      for (let layer = 0; layer < config.numLayers; layer++) {
        expect(given.get(matrixKey(layer, 'self_attn.k_proj'))).toBe(given.get(matrixKey(layer, 'self_attn.q_proj')));
        expect(given.get(matrixKey(layer, 'mlp.up_proj'))).toBe(given.get(matrixKey(layer, 'mlp.gate_proj')));
      }
      for (const [index, matrix] of order.entries()) {
        const before = new Map([...replaced].filter(([n]) => order.findIndex((m) => m.name === n) < index));
        const input: ReferenceLinearInput = LINEAR_INPUT[matrix.module as LinearModule];
        const rows: Float64Array[] = [];
        for (let b = 0; b < blocks; b++) {
          referenceForward(withOverrides(weights, before), Array.from(ids.subarray(b * seqlen, (b + 1) * seqlen)), (layer, kind, x) => {
            if (layer === matrix.layer && kind === input) rows.push(x);
          });
        }
        const n = matrix.shape[1];
        const expected = new Float64Array(n * n);
        for (const x of rows) {
          for (let t = 0; t < x.length / n; t++) for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) expected[i * n + j]! += (2 / (blocks * seqlen)) * x[t * n + i]! * x[t * n + j]!;
        }
        const hessian = given.get(matrix.key)!;
        expect(hessian.samples).toBe(blocks * seqlen);
        expect(relativeError(hessian.data, expected), matrix.key).toBeLessThan(1e-4);
      }
      await model.dispose();
    });
  }
});
