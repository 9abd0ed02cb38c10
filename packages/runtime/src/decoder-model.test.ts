import { describe, expect, it } from 'vitest';
import { createDecoderModel, loadDecoderModel } from './decoder-model.js';
import { layerTensorName, loadDecoderWeights } from './decoder-weights.js';
import { referenceForward } from './reference-forward.js';
import { randomDecoderSource, relativeError, seededNormal, tinyConfig } from './test-models.js';

function randomIds(count: number, vocab: number, seed: number): number[] {
  const random = seededNormal(seed);
  return Array.from({ length: count }, () => Math.floor(Math.abs(random() * 1000)) % vocab);
}

const CONFIGS = {
  'llama GQA untied': tinyConfig(),
  'llama MHA tied, 3 layers': tinyConfig({ numKeyValueHeads: 4, tieWordEmbeddings: true, numLayers: 3 }),
  'qwen2 q/k/v biases, tied, GQA 4:1': tinyConfig({ modelType: 'qwen2', architecture: 'Qwen2ForCausalLM', numKeyValueHeads: 1, tieWordEmbeddings: true, ropeTheta: 1e6 }),
  'mistral, head_dim != hidden/heads': tinyConfig({ modelType: 'mistral', architecture: 'MistralForCausalLM', headDim: 16, rmsNormEps: 1e-6 }),
  'llama attention_bias + mlp_bias': tinyConfig({ attentionBias: true, mlpBias: true }),
};

describe('ONNX decoder vs the float64 reference forward', () => {
  for (const [label, config] of Object.entries(CONFIGS)) {
    for (const weightMode of ['initializers', 'inputs'] as const) {
      it(`${label} (${weightMode}): logits within 1e-4 relative, batch of 2`, async () => {
        const weights = await loadDecoderWeights(randomDecoderSource(config, 7), config);
        if (config.modelType === 'qwen2') expect(weights.layout.qkvBias).toBe(true);
        const model = await createDecoderModel(weights, { weightMode });
        const T = 19;
        const ids = randomIds(2 * T, config.vocabSize, 3);
        const logits = await model.logits({ ids, batch: 2 });
        expect(logits.length).toBe(2 * T * config.vocabSize);
        for (let b = 0; b < 2; b++) {
          const expected = referenceForward(weights, ids.slice(b * T, (b + 1) * T));
          const actual = logits.subarray(b * T * config.vocabSize, (b + 1) * T * config.vocabSize);
          expect(relativeError(actual, expected)).toBeLessThan(1e-4);
        }
        // token_nll is -log_softmax(logits)[target], from the same graph.
        const targets = ids.map((_, i) => (i * 5) % config.vocabSize);
        const nll = await model.tokenNll({ ids, batch: 2 }, targets);
        const reference = referenceForward(weights, ids.slice(0, T));
        for (const t of [0, 7, T - 1]) {
          const row = reference.subarray(t * config.vocabSize, (t + 1) * config.vocabSize);
          const max = Math.max(...row);
          const logSumExp = max + Math.log(row.reduce((s, v) => s + Math.exp(v - max), 0));
          expect(nll[t]!).toBeCloseTo(logSumExp - row[targets[t]!]!, 4);
        }
        // Both outputs from one run: the same numbers as the two separate runs, bit for bit.
        const both = await model.logitsAndNll({ ids, batch: 2 }, targets);
        expect(both.logits).toEqual(logits);
        expect(both.nll).toEqual(nll);
        await model.dispose();
      });
    }
  }

  it('a causal model: logits at position t ignore later tokens', async () => {
    const config = tinyConfig();
    const model = await loadDecoderModel(randomDecoderSource(config, 2), config);
    const a = await model.logits({ ids: [1, 2, 3, 4, 5] });
    const b = await model.logits({ ids: [1, 2, 3, 9, 11] });
    expect(relativeError(a.subarray(0, 3 * 64), b.subarray(0, 3 * 64))).toBeLessThan(1e-6);
    expect(relativeError(a.subarray(3 * 64), b.subarray(3 * 64))).toBeGreaterThan(1e-3);
    await model.dispose();
  });

  it('setWeights swaps a matrix without a new model, in both weight modes', async () => {
    const config = tinyConfig();
    const source = randomDecoderSource(config, 5);
    const ids = randomIds(11, config.vocabSize, 1);
    const name = layerTensorName(1, 'q');
    const replacement = new Float32Array(config.numHeads * config.headDim * config.hiddenSize).map((_, i) => Math.sin(i) * 0.2);
    const expected = referenceForward(await loadDecoderWeights(source, config, new Map([[name, replacement]])), ids);
    for (const weightMode of ['initializers', 'inputs'] as const) {
      const model = await loadDecoderModel(source, config, { weightMode });
      await model.setWeights(new Map([[name, replacement]]));
      expect(relativeError(await model.logits({ ids }), expected)).toBeLessThan(1e-4);
      await model.dispose();
    }
  });

  it('rejects bad input with typed errors naming the problem', async () => {
    const config = tinyConfig();
    const source = randomDecoderSource(config, 5);
    await expect(loadDecoderWeights(source, config, new Map([[layerTensorName(0, 'k'), new Float32Array(3)]]))).rejects.toThrow(/self_attn.k_proj.weight.*needs \[16, 32\]/);
    await expect(loadDecoderWeights(source, { ...config, numLayers: 3 })).rejects.toThrow(/model.layers.2.input_layernorm.weight" not found/);
    await expect(loadDecoderWeights(source, { ...config, modelType: 'gpt2' })).rejects.toThrow(/architecture "gpt2" is not supported/);
    const model = await loadDecoderModel(source, config);
    await expect(model.logits({ ids: [1, 2, 64] })).rejects.toThrow(/token id 64 at position 2/);
    await expect(model.logits({ ids: [1, 2, 3], batch: 2 })).rejects.toThrow(/option "batch"/);
    await model.dispose();
  });
});
