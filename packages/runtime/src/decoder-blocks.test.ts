import { describe, expect, it } from 'vitest';
import { createDecoderBlocks } from './decoder-blocks.js';
import { layerTensorName, loadDecoderWeights, withOverrides } from './decoder-weights.js';
import { referenceForward } from './reference-forward.js';
import { randomDecoderSource, relativeError, tinyConfig } from './test-models.js';

describe('block-level entry points', () => {
  for (const config of [tinyConfig({ numLayers: 3 }), tinyConfig({ modelType: 'qwen2', architecture: 'Qwen2ForCausalLM', tieWordEmbeddings: true })]) {
    it(`${config.modelType}: layers run one by one reproduce the reference forward, and each block's parts add up`, async () => {
      const weights = await loadDecoderWeights(randomDecoderSource(config, 11), config);
      const blocks = await createDecoderBlocks(weights);
      const T = 13;
      const ids = Array.from({ length: 2 * T }, (_, i) => (i * 37 + 5) % config.vocabSize);
      const states = await blocks.hiddenStates({ ids, batch: 2 });
      expect(states).toHaveLength(config.numLayers + 1);
      const { logits, tokenNll } = await blocks.head(states[config.numLayers]!, ids);
      expect(tokenNll).toHaveLength(2 * T);
      for (let b = 0; b < 2; b++) {
        const expected = referenceForward(weights, ids.slice(b * T, (b + 1) * T));
        expect(relativeError(logits.subarray(b * T * config.vocabSize, (b + 1) * T * config.vocabSize), expected)).toBeLessThan(1e-4);
      }

      // Layer 1's blocks: attention + residual, MLP + residual, and o_proj / down_proj re-applied to saved inputs.
      const hidden = states[1]!;
      const attention = await blocks.attention(1, hidden);
      const mlp = await blocks.mlp(1, { ...hidden, data: attention.residual });
      for (let i = 0; i < hidden.data.length; i += 17) {
        expect(attention.residual[i]!).toBeCloseTo(hidden.data[i]! + attention.attention[i]!, 5);
        expect(mlp.output[i]!).toBeCloseTo(attention.residual[i]! + mlp.mlp[i]!, 5);
      }
      expect(relativeError(mlp.output, states[2]!.data)).toBeLessThan(1e-6);
      const o = weights.tensors.get(layerTensorName(1, 'o'))!;
      expect(relativeError(await blocks.linear(attention.context, o, config.hiddenSize), attention.attention)).toBeLessThan(1e-5);
      const down = weights.tensors.get(layerTensorName(1, 'down'))!;
      expect(relativeError(await blocks.linear(mlp.activation, down, config.hiddenSize), mlp.mlp)).toBeLessThan(1e-5);
      // X^T X of the MLP activation [rows, intermediate] against a float64 product
      const k = config.intermediateSize;
      const rows = mlp.activation.length / k;
      const gram = await blocks.gram(mlp.activation, k);
      const expected = new Float64Array(k * k);
      for (let r = 0; r < rows; r++) for (let i = 0; i < k; i++) for (let j = 0; j < k; j++) expected[i * k + j]! += mlp.activation[r * k + i]! * mlp.activation[r * k + j]!;
      expect(gram.length).toBe(k * k);
      expect(relativeError(gram, expected)).toBeLessThan(1e-6);
      await expect(blocks.gram(mlp.activation.subarray(1), k)).rejects.toThrow(/not rows of/);
      await blocks.dispose();
    });
  }

  it('per-call overrides change only that call and match a model built with the replaced weight', async () => {
    const config = tinyConfig();
    const weights = await loadDecoderWeights(randomDecoderSource(config, 3), config);
    const blocks = await createDecoderBlocks(weights);
    const ids = Array.from({ length: 9 }, (_, i) => (i * 11) % config.vocabSize);
    const name = layerTensorName(1, 'v');
    const replacement = weights.tensors.get(name)!.map((v) => Math.round(v * 8) / 8);
    const states = await blocks.hiddenStates({ ids });
    const swapped = await blocks.layer(1, states[1]!, new Map([[name, replacement]]));
    const plain = await blocks.layer(1, states[1]!);
    expect(relativeError(plain.output, states[2]!.data)).toBeLessThan(1e-6);
    expect(relativeError(swapped.output, plain.output)).toBeGreaterThan(1e-4);
    const { logits } = await blocks.head({ ...states[2]!, data: (await blocks.layer(1, states[1]!, new Map([[name, replacement]]))).output });
    const expected = referenceForward(withOverrides(weights, new Map([[name, replacement]])), ids);
    expect(relativeError(logits, expected)).toBeLessThan(1e-4);
    await expect(blocks.attention(0, states[0]!, new Map([[name, replacement]]))).rejects.toThrow(/not in layer 0/);
    await expect(blocks.attention(2, states[0]!)).rejects.toThrow(/option "layer"/);
    await blocks.dispose();
  });

  it('an untied model\'s head takes a replaced lm_head for one call', async () => {
    const config = tinyConfig();
    const weights = await loadDecoderWeights(randomDecoderSource(config, 4, { lmHead: true }), config);
    expect(weights.layout.tiedEmbeddings).toBe(false);
    const blocks = await createDecoderBlocks(weights);
    const ids = Array.from({ length: 7 }, (_, i) => (i * 13) % config.vocabSize);
    const states = await blocks.hiddenStates({ ids });
    const head = weights.tensors.get('lm_head.weight')!.map((v) => Math.round(v * 4) / 4);
    const swapped = await blocks.head(states[config.numLayers]!, undefined, new Map([['lm_head.weight', head]]));
    expect(relativeError(swapped.logits, referenceForward(withOverrides(weights, new Map([['lm_head.weight', head]])), ids))).toBeLessThan(1e-4);
    const plain = await blocks.head(states[config.numLayers]!);
    expect(relativeError(plain.logits, referenceForward(weights, ids))).toBeLessThan(1e-4);
    await expect(blocks.head(states[2]!, undefined, new Map([[layerTensorName(0, 'q'), head]]))).rejects.toThrow(/is not read by the head/);
    await blocks.dispose();
  });
});
