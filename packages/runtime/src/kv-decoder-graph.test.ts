import { describe, expect, it } from 'vitest';
import { buildKvDecoderGraph, type GraphWeight, type MatMulNBitsWeight } from './kv-decoder-graph.js';
import { loadDecoderWeights, type DecoderWeights } from './decoder-weights.js';
import { createKvDecoder, greedyDecode } from './kv-decoder.js';
import { createSession, int64Tensor } from './session.js';
import { referenceForward } from './reference-forward.js';
import { randomDecoderSource, relativeError, seededNormal, tinyConfig } from './test-models.js';

const MODELS = {
  llama: tinyConfig(),
  qwen2: tinyConfig({ modelType: 'qwen2', architecture: 'Qwen2ForCausalLM', numHeads: 4, numKeyValueHeads: 1 }),
  mistral: tinyConfig({ modelType: 'mistral', architecture: 'MistralForCausalLM', numKeyValueHeads: 4, ropeTheta: 1e6 }),
  tied: tinyConfig({ tieWordEmbeddings: true, numLayers: 3 }),
};

const IDS = [3, 17, 42, 5, 63, 0, 11, 29];

function lastRows(values: ArrayLike<number>, vocab: number, rows: number): Float64Array {
  return Float64Array.from({ length: rows * vocab }, (_, i) => values[values.length - rows * vocab + i]!);
}

/** A linear weight packed by hand: random 4-bit codes, scales and fractional zeros (one per block of 16). */
function packRandom4Bit(n: number, k: number, seed: number): { packed: MatMulNBitsWeight; dense: Float32Array } {
  const random = seededNormal(seed);
  const block = 16;
  const blocks = k / block;
  const codes = new Uint8Array((n * k) / 2);
  const scales = new Float32Array(n * blocks);
  const zeroPoints = new Uint8Array(n * Math.ceil(blocks / 2));
  const correction = new Float32Array(blocks * n);
  const dense = new Float32Array(n * k);
  for (let r = 0; r < n; r++) {
    for (let b = 0; b < blocks; b++) {
      const scale = Math.fround(0.02 + 0.01 * Math.abs(random()));
      const zero = 7.5 + 2 * random();
      const zp = Math.min(15, Math.max(0, Math.round(zero)));
      scales[r * blocks + b] = scale;
      zeroPoints[r * Math.ceil(blocks / 2) + (b >> 1)]! |= zp << ((b & 1) * 4);
      correction[b * n + r] = (zero - zp) * scale;
      for (let j = 0; j < block; j++) {
        const col = b * block + j;
        const code = Math.floor(Math.abs(random() * 5)) % 16;
        codes[(r * k + col) >> 1]! |= code << ((col & 1) * 4);
        dense[r * k + col] = (code - zero) * scale;
      }
    }
  }
  return { packed: { format: 'matmul-nbits', bits: 4, blockSize: block, shape: [n, k], codes, scales, zeroPoints, correction }, dense };
}

describe('buildKvDecoderGraph', () => {
  for (const [family, config] of Object.entries(MODELS)) {
    it(`${family}: prefill and cached steps match the float64 reference forward`, async () => {
      const weights = await loadDecoderWeights(randomDecoderSource(config, 7), config);
      const graph = buildKvDecoderGraph(config, weights.layout, { weights: weights.tensors });
      const decoder = await createKvDecoder(graph.encode(), config, { threads: 1 });
      const expected = referenceForward(weights, IDS);
      const prefill = await decoder.forward(IDS.slice(0, 5));
      const step6 = await decoder.forward([IDS[5]!]);
      const steps78 = await decoder.forward(IDS.slice(6));
      const v = config.vocabSize;
      expect(relativeError(prefill, expected.slice(0, 5 * v))).toBeLessThan(1e-5);
      expect(relativeError(step6, expected.slice(5 * v, 6 * v))).toBeLessThan(1e-5);
      expect(relativeError(steps78, lastRows(expected, v, 2))).toBeLessThan(1e-5);
      expect(decoder.cached).toBe(IDS.length);
      await decoder.dispose();
    });
  }

  it('packed MatMulNBits weights with a fractional-zero correction equal the dense dequantized model', async () => {
    const config = MODELS.qwen2;
    const weights = await loadDecoderWeights(randomDecoderSource(config, 3), config);
    const graphWeights = new Map<string, GraphWeight>(weights.tensors);
    const dense = new Map(weights.tensors);
    let seed = 100;
    for (const [name, shape] of weights.shapes) {
      if (!/layers\.\d+\.(self_attn|mlp)\..*weight$/.test(name)) continue;
      const { packed, dense: values } = packRandom4Bit(shape[0]!, shape[1]!, seed++);
      graphWeights.set(name, packed);
      dense.set(name, values);
    }
    const reference: DecoderWeights = { ...weights, tensors: dense };
    const expected = referenceForward(reference, IDS);
    const decoder = await createKvDecoder(buildKvDecoderGraph(config, weights.layout, { weights: graphWeights }).encode(), config, { threads: 1 });
    expect(relativeError(await decoder.forward(IDS), expected)).toBeLessThan(1e-5);
    await decoder.dispose();
  });

  it('without the cache (kvCache: false) the graph takes input_ids only and gives the same logits', async () => {
    const config = MODELS.qwen2;
    const weights = await loadDecoderWeights(randomDecoderSource(config, 13), config);
    const graph = buildKvDecoderGraph(config, weights.layout, { weights: weights.tensors, kvCache: false });
    expect(graph.inputs.map((i) => i.name)).toEqual(['input_ids']);
    expect(graph.outputs.map((o) => o.name)).toEqual(['logits']);
    const session = await createSession(graph.encode(), { threads: 1 });
    const result = await session.run({ input_ids: int64Tensor(IDS, [1, IDS.length]) });
    expect(relativeError(result.logits!.data as Float32Array, referenceForward(weights, IDS))).toBeLessThan(1e-5);
    await session.release();
  });

  it('greedy decoding with the cache picks the argmax of the full forward at every step', async () => {
    const config = MODELS.llama;
    const weights = await loadDecoderWeights(randomDecoderSource(config, 11), config);
    const decoder = await createKvDecoder(buildKvDecoderGraph(config, weights.layout, { weights: weights.tensors }).encode(), config);
    const generated = await greedyDecode(decoder, [1, 2, 3], { maxNewTokens: 6 });
    const sequence = [1, 2, 3];
    for (const id of generated) {
      const logits = referenceForward(weights, sequence);
      const last = logits.slice(-config.vocabSize);
      expect(id).toBe(last.indexOf(Math.max(...last)));
      sequence.push(id);
    }
    await decoder.dispose();
  });

  it('float16 activations load and stay close to the float64 reference', async () => {
    const config = MODELS.llama;
    const weights = await loadDecoderWeights(randomDecoderSource(config, 5), config);
    const decoder = await createKvDecoder(buildKvDecoderGraph(config, weights.layout, { weights: weights.tensors, activations: 'float16' }).encode(), config);
    expect(decoder.cacheType).toBe('float16');
    const logits = await decoder.forward(IDS.slice(0, 6));
    await decoder.forward(IDS.slice(6));
    expect(relativeError(logits, referenceForward(weights, IDS.slice(0, 6)))).toBeLessThan(1e-2);
    await decoder.dispose();
  });
});
