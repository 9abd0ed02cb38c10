import type { WeightTensor } from '@layerquant/core';
import { describe, expect, it } from 'vitest';
import { loadDecoderBlocks } from './decoder-blocks.js';
import { loadDecoderModel } from './decoder-model.js';
import { expectedShapes, decoderLayout, type TensorSource } from './decoder-weights.js';
import { floatWeightBytes, layerStreamedModel, loadLayerStreamedModel, streamedWeightBytes } from './layer-streamed-model.js';
import { randomDecoderSource, relativeError, tinyConfig } from './test-models.js';

/** A source that logs every read, to check what the streamed model holds. */
function loggingSource(source: TensorSource): TensorSource & { reads: string[] } {
  const reads: string[] = [];
  return {
    reads,
    dir: source.dir,
    has: (name) => source.has(name),
    read: async (name): Promise<WeightTensor> => {
      reads.push(name);
      return source.read(name);
    },
  };
}

const layerOf = (name: string) => Number(/^model\.layers\.(\d+)\./.exec(name)?.[1] ?? -1);

describe('layer-streamed evaluation', () => {
  const configs = [
    tinyConfig({ numLayers: 3 }),
    tinyConfig({ modelType: 'qwen2', architecture: 'Qwen2ForCausalLM', tieWordEmbeddings: true }),
    tinyConfig({ modelType: 'mistral', architecture: 'MistralForCausalLM', numKeyValueHeads: 1, mlpBias: true }),
  ];
  for (const config of configs) {
    it(`${config.modelType}: per-window NLL equals the one-session model's, reading each layer once, in order`, async () => {
      const source = loggingSource(randomDecoderSource(config, 5));
      const windows = [17, 17, 9].map((length, w) => {
        const ids = Array.from({ length }, (_, i) => (i * 13 + w * 7 + 3) % config.vocabSize);
        return { ids, targets: [...ids.slice(1), 0] };
      });
      const streamed = await loadLayerStreamedModel(source, config);
      const layers: number[] = [];
      const nll = await streamed.windowsNll(windows, (done) => layers.push(done));
      expect(layers).toEqual(Array.from({ length: config.numLayers + 1 }, (_, i) => i + 1));
      await streamed.dispose();

      // Every tensor read exactly once, layers ascending: never more than one layer's weights at a time.
      expect(new Set(source.reads).size).toBe(source.reads.length);
      const order = source.reads.map(layerOf).filter((l) => l >= 0);
      expect(order).toEqual([...order].sort((a, b) => a - b));
      expect(source.reads).toHaveLength(expectedShapes(config, decoderLayout(config, source)).size);

      const model = await loadDecoderModel(randomDecoderSource(config, 5), config);
      for (const [w, window] of windows.entries()) {
        const expected = await model.tokenNll({ ids: window.ids }, window.targets);
        expect(nll[w]).toHaveLength(window.ids.length);
        expect(relativeError(nll[w]!, expected)).toBeLessThan(1e-5);
      }
      // The logits, one window at a time after the last layer, with the same NLL.
      const streamedAgain = await loadLayerStreamedModel(randomDecoderSource(config, 5), config);
      const seen: number[] = [];
      await streamedAgain.windowsLogits(windows, async (index, scores) => {
        seen.push(index);
        const window = windows[index]!;
        expect(scores.nll).toEqual(nll[index]);
        expect(relativeError(scores.logits, await model.logits({ ids: window.ids }))).toBeLessThan(1e-5);
      });
      expect(seen).toEqual([0, 1, 2]);
      await streamedAgain.dispose();
      await model.dispose();
    });
  }

  it('streamed blocks drop a layer when the next one is read; the byte estimates follow the shapes', async () => {
    const config = tinyConfig({ numLayers: 4 });
    const source = loggingSource(randomDecoderSource(config, 2));
    const blocks = await loadDecoderBlocks(source, config);
    const hidden = blocks.embed({ ids: [1, 2, 3] });
    await blocks.layer(2, hidden);
    await blocks.layer(0, hidden);
    await blocks.layer(2, hidden);
    // layer 2 is read twice: it was dropped when layer 0 was loaded
    const q2 = source.reads.filter((n) => n === 'model.layers.2.self_attn.q_proj.weight');
    expect(q2).toHaveLength(2);
    await expect(layerStreamedModel(blocks).windowsNll([{ ids: [1, 2], targets: [2] }])).rejects.toThrow(/1 targets for 2 token ids/);
    await blocks.dispose();

    const { hiddenSize: h, intermediateSize: f, vocabSize: v, numHeads, numKeyValueHeads, headDim } = config;
    const layer = 4 * (2 * h + 2 * h * numHeads * headDim + 2 * h * numKeyValueHeads * headDim + 3 * h * f);
    const heads = decoderLayout(config, source).tiedEmbeddings ? 1 : 2;
    const outside = 4 * (heads * v * h + h);
    expect(floatWeightBytes(config, source)).toBe(outside + 4 * layer);
    expect(streamedWeightBytes(config, source)).toBe(outside + layer);
  });
});
