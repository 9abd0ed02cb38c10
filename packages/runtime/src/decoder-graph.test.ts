import { describe, expect, it } from 'vitest';
import { buildDecoderGraph, type GraphWeight, type MatMulNBitsWeight } from './decoder-graph.js';
import { loadDecoderWeights, type DecoderWeights } from './decoder-weights.js';
import type { GraphBuilder } from './graph-builder.js';
import { createKvDecoder, KV_CACHE_STEP_TOKENS } from './kv-decoder.js';
import { greedyDecode } from './greedy-decode.js';
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

/** A linear weight packed by hand: random codes, scales and fractional zeros (one per block of 16), LSB first along K. */
function packRandom(n: number, k: number, seed: number, bits: 2 | 4 | 8 = 4): { packed: MatMulNBitsWeight; dense: Float32Array } {
  const random = seededNormal(seed);
  const block = 16;
  const blocks = k / block;
  const levels = 2 ** bits;
  const perByte = 8 / bits;
  const codes = new Uint8Array((n * k * bits) / 8);
  const scales = new Float32Array(n * blocks);
  const zeroBytes = Math.ceil((blocks * bits) / 8);
  const zeroPoints = new Uint8Array(n * zeroBytes);
  const correction = new Float32Array(blocks * n);
  const dense = new Float32Array(n * k);
  for (let r = 0; r < n; r++) {
    for (let b = 0; b < blocks; b++) {
      const scale = Math.fround((0.3 + 0.1 * Math.abs(random())) / levels);
      const zero = (levels - 1) / 2 + random();
      const zp = Math.min(levels - 1, Math.max(0, Math.round(zero)));
      scales[r * blocks + b] = scale;
      zeroPoints[r * zeroBytes + Math.floor(b / perByte)]! |= zp << ((b % perByte) * bits);
      correction[b * n + r] = (zero - zp) * scale;
      for (let j = 0; j < block; j++) {
        const col = b * block + j;
        const code = Math.min(levels - 1, Math.max(0, Math.round(zero + (random() * levels) / 4)));
        codes[Math.floor((r * k + col) / perByte)]! |= code << (((r * k + col) % perByte) * bits);
        dense[r * k + col] = (code - zero) * scale;
      }
    }
  }
  return { packed: { format: 'matmul-nbits', bits, blockSize: block, shape: [n, k], codes, scales, zeroPoints, correction }, dense };
}

/** Every linear matrix packed (bits per matrix from `bitsOf`), and the dense weights they decode to. */
function packAll(weights: DecoderWeights, seed: number, bitsOf: (name: string) => 2 | 4 | 8 = () => 4): { graph: Map<string, GraphWeight>; reference: DecoderWeights } {
  const graph = new Map<string, GraphWeight>(weights.tensors);
  const dense = new Map(weights.tensors);
  for (const [name, shape] of weights.shapes) {
    if (!/layers\.\d+\.(self_attn|mlp)\..*weight$/.test(name)) continue;
    const { packed, dense: values } = packRandom(shape[0]!, shape[1]!, seed++, bitsOf(name));
    graph.set(name, packed);
    dense.set(name, values);
  }
  return { graph, reference: { ...weights, tensors: dense } };
}

describe('buildDecoderGraph with the KV cache', () => {
  for (const [family, config] of Object.entries(MODELS)) {
    it(`${family}: prefill and cached steps match the float64 reference forward`, async () => {
      const weights = await loadDecoderWeights(randomDecoderSource(config, 7), config);
      const graph = buildDecoderGraph(config, weights.layout, { weights: weights.tensors, kvCache: true });
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
    const { graph, reference } = packAll(weights, 100);
    const expected = referenceForward(reference, IDS);
    const decoder = await createKvDecoder(buildDecoderGraph(config, weights.layout, { weights: graph, kvCache: true }).encode(), config, { threads: 1 });
    expect(relativeError(await decoder.forward(IDS), expected)).toBeLessThan(1e-5);
    await decoder.dispose();
  });

  it('without the cache (kvCache: false) the graph takes input_ids only and gives the same logits', async () => {
    const config = MODELS.qwen2;
    const weights = await loadDecoderWeights(randomDecoderSource(config, 13), config);
    const graph = buildDecoderGraph(config, weights.layout, { weights: weights.tensors });
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
    const decoder = await createKvDecoder(buildDecoderGraph(config, weights.layout, { weights: weights.tensors, kvCache: true }).encode(), config);
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
    const decoder = await createKvDecoder(buildDecoderGraph(config, weights.layout, { weights: weights.tensors, kvCache: true, activations: 'float16' }).encode(), config);
    expect(decoder.cacheType).toBe('float16');
    const logits = await decoder.forward(IDS.slice(0, 6));
    await decoder.forward(IDS.slice(6));
    expect(relativeError(logits, referenceForward(weights, IDS.slice(0, 6)))).toBeLessThan(1e-2);
    await decoder.dispose();
  });
});

// GroupQueryAttention needs head_dim % 16 == 0 in onnxruntime: the fused models use head_dim 16.
const FUSED = {
  llama: tinyConfig({ hiddenSize: 64, headDim: 16 }),
  'qwen2 (q/k/v biases, tied, GQA 4:1)': tinyConfig({ modelType: 'qwen2', architecture: 'Qwen2ForCausalLM', hiddenSize: 64, headDim: 16, numKeyValueHeads: 1, tieWordEmbeddings: true, ropeTheta: 1e6 }),
  'mistral (head_dim != hidden / heads)': tinyConfig({ modelType: 'mistral', architecture: 'MistralForCausalLM', hiddenSize: 48, headDim: 16, numKeyValueHeads: 4, rmsNormEps: 1e-6 }),
  'llama3 rope scaling, attention and mlp biases': tinyConfig({ hiddenSize: 64, headDim: 16, attentionBias: true, mlpBias: true, ropeScaling: { type: 'llama3', factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositionEmbeddings: 16 } }),
};

/** Nodes per operator type of a built graph (the exported file's are checked by an independent decoder in export). */
function opCounts(graph: GraphBuilder): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const node of graph.nodes) counts[node.opType] = (counts[node.opType] ?? 0) + 1;
  return counts;
}

describe('the fused decoder graph (contrib operators)', () => {
  for (const [family, config] of Object.entries(FUSED)) {
    for (const cacheMode of ['shared', 'concat'] as const) {
      it(`${family}, ${cacheMode} cache: prefill and cached steps match the float64 reference forward`, async () => {
        const weights = await loadDecoderWeights(randomDecoderSource(config, 7), config);
        const bytes = buildDecoderGraph(config, weights.layout, { weights: weights.tensors, kvCache: true, operators: 'fused' }).encode();
        const decoder = await createKvDecoder(bytes, config, { threads: 1, cacheMode });
        expect(decoder.cacheMode).toBe(cacheMode);
        const expected = referenceForward(weights, IDS);
        const v = config.vocabSize;
        decoder.reserve(6);
        expect(relativeError(await decoder.forward(IDS.slice(0, 5)), expected.slice(0, 5 * v))).toBeLessThan(1e-5);
        expect(relativeError(await decoder.forward([IDS[5]!]), expected.slice(5 * v, 6 * v))).toBeLessThan(1e-5);
        // Past the reserved room: a shared cache grows, keeping what it holds.
        expect(relativeError(await decoder.forward(IDS.slice(6), { lastOnly: true }), lastRows(expected, v, 1))).toBeLessThan(1e-5);
        decoder.reset();
        expect(relativeError(await decoder.forward(IDS.slice(0, 3)), expected.slice(0, 3 * v))).toBeLessThan(1e-5);
        await decoder.dispose();
      });
    }
  }

  it('one GroupQueryAttention, one MatMulNBits for q/k/v and one for gate/up per layer; mixed bits stay separate and exact', async () => {
    const config = FUSED['qwen2 (q/k/v biases, tied, GQA 4:1)'];
    const weights = await loadDecoderWeights(randomDecoderSource(config, 3), config);
    const uniform = packAll(weights, 200);
    const graph = buildDecoderGraph(config, weights.layout, { weights: uniform.graph, kvCache: true, operators: 'fused', accuracyLevel: 0 });
    const counts = opCounts(graph);
    const bytes = graph.encode();
    const L = config.numLayers;
    expect(counts.GroupQueryAttention).toBe(L);
    expect(counts.MatMulNBits).toBe(4 * L); // q/k/v, o, gate/up, down
    expect(counts.SkipSimplifiedLayerNormalization).toBe(2 * L);
    expect(counts.SimplifiedLayerNormalization).toBe(1);
    // The cache is never concatenated (the only Concats build shape tensors, shared by all layers).
    expect(graph.nodes.filter((n) => n.opType === 'Concat' && n.inputs.some((i) => i.startsWith('past_key_values')))).toEqual([]);
    // Per layer: 2 SkipSimplifiedLayerNormalization, 4 MatMulNBits, GroupQueryAttention and the two Reshapes around
    // it, Split + Sigmoid + 2 Mul for SiLU(gate) * up, the q/k/v bias Add, and 3 nodes (Reshape, ReduceSum, Gemm) per
    // MatMulNBits for HQQ's fractional zero: 26 (55 in the standard graph without the zero correction).
    const oneMore = buildDecoderGraph({ ...config, numLayers: L + 1 }, weights.layout, { weights: packAll(await loadDecoderWeights(randomDecoderSource({ ...config, numLayers: L + 1 }, 3), { ...config, numLayers: L + 1 }), 200).graph, kvCache: true, operators: 'fused' });
    expect(oneMore.nodes.length - graph.nodes.length).toBe(26);
    expect(counts.Transpose ?? 0).toBe(0);
    expect(counts.Softmax ?? 0).toBe(0);
    const decoder = await createKvDecoder(bytes, config, { threads: 1 });
    expect(relativeError(await decoder.forward(IDS), referenceForward(uniform.reference, IDS))).toBeLessThan(1e-5);
    await decoder.dispose();

    // 2-bit q, 8-bit k, 4-bit v and gate, 8-bit up: nothing shares a node, and the values are the same.
    const bitsOf = (name: string): 2 | 4 | 8 => (/q_proj|up_proj/.test(name) ? (name.includes('q_proj') ? 2 : 8) : name.includes('k_proj') ? 8 : 4);
    const mixed = packAll(weights, 300, bitsOf);
    const mixedGraph = buildDecoderGraph(config, weights.layout, { weights: mixed.graph, kvCache: true, operators: 'fused' });
    expect(opCounts(mixedGraph).MatMulNBits).toBe(7 * L);
    const mixedBytes = mixedGraph.encode();
    const mixedDecoder = await createKvDecoder(mixedBytes, config, { threads: 1 });
    expect(relativeError(await mixedDecoder.forward(IDS), referenceForward(mixed.reference, IDS))).toBeLessThan(1e-5);
    await mixedDecoder.dispose();
  });

  it('greedy decoding: the shared and concatenated caches and the standard graph give the reference argmax at every step', async () => {
    const config = FUSED.llama;
    const weights = await loadDecoderWeights(randomDecoderSource(config, 11), config);
    const fused = buildDecoderGraph(config, weights.layout, { weights: weights.tensors, kvCache: true, operators: 'fused' }).encode();
    const standard = buildDecoderGraph(config, weights.layout, { weights: weights.tensors, kvCache: true }).encode();
    const runs: number[][] = [];
    for (const [bytes, cacheMode] of [[fused, 'shared'], [fused, 'concat'], [standard, 'concat']] as const) {
      const decoder = await createKvDecoder(bytes, config, { threads: 1, cacheMode });
      runs.push(await greedyDecode(decoder, [1, 2, 3], { maxNewTokens: 8 }));
      await decoder.dispose();
    }
    const sequence = [1, 2, 3];
    for (const id of runs[0]!) {
      const last = Array.from(referenceForward(weights, sequence).slice(-config.vocabSize));
      expect(id).toBe(last.indexOf(Math.max(...last)));
      sequence.push(id);
    }
    expect(runs[1]).toEqual(runs[0]);
    expect(runs[2]).toEqual(runs[0]);
  });

  it('a shared cache grows in steps with the tokens it holds, never past the reserved room, and keeps them exact', async () => {
    const config = { ...FUSED.llama, maxPositionEmbeddings: 256 };
    const weights = await loadDecoderWeights(randomDecoderSource(config, 13), config);
    const bytes = buildDecoderGraph(config, weights.layout, { weights: weights.tensors, kvCache: true, operators: 'fused' }).encode();
    const decoder = await createKvDecoder(bytes, config, { threads: 1, cacheMode: 'shared' });
    const ids = Array.from({ length: 150 }, (_, i) => (i * 7 + 3) % config.vocabSize);
    const expected = referenceForward(weights, ids);
    const v = config.vocabSize;
    decoder.reserve(140);
    const capacities = new Set<number>();
    let logits = await decoder.forward(ids.slice(0, 10));
    expect(relativeError(logits, expected.slice(0, 10 * v))).toBeLessThan(1e-5);
    for (let t = 10; t < ids.length; t++) {
      logits = await decoder.forward([ids[t]!]);
      capacities.add(decoder.capacity);
      // Room for the tokens held, within one step of them; the reserve caps growth until the tokens pass it.
      expect(decoder.capacity).toBeGreaterThanOrEqual(t + 1);
      expect(decoder.capacity).toBeLessThanOrEqual(t + 1 <= 140 ? Math.min(140, t + KV_CACHE_STEP_TOKENS) : t + KV_CACHE_STEP_TOKENS);
      if (t % 20 === 0 || t === ids.length - 1) expect(relativeError(logits, expected.slice(t * v, (t + 1) * v))).toBeLessThan(1e-5);
    }
    expect([...capacities]).toEqual([64, 128, 140, 192]);
    // Reset starts small again: a long sequence before does not make the next one copy its buffers.
    decoder.reset();
    await decoder.forward(ids.slice(0, 3));
    expect(decoder.capacity).toBe(KV_CACHE_STEP_TOKENS);
    await decoder.dispose();
  });

  it('without the cache (input_ids only, batch of 2) and with float16 activations', async () => {
    const config = FUSED.llama;
    const weights = await loadDecoderWeights(randomDecoderSource(config, 5), config);
    const graph = buildDecoderGraph(config, weights.layout, { weights: weights.tensors, operators: 'fused' });
    expect(graph.inputs.map((i) => i.name)).toEqual(['input_ids']);
    const session = await createSession(graph.encode(), { threads: 1 });
    const ids = [...IDS, ...IDS.slice().reverse()];
    const logits = (await session.run({ input_ids: int64Tensor(ids, [2, IDS.length]) })).logits!.data as Float32Array;
    const v = config.vocabSize;
    expect(relativeError(logits.subarray(0, IDS.length * v), referenceForward(weights, IDS))).toBeLessThan(1e-5);
    expect(relativeError(logits.subarray(IDS.length * v), referenceForward(weights, IDS.slice().reverse()))).toBeLessThan(1e-5);
    await session.release();

    const half = await createKvDecoder(buildDecoderGraph(config, weights.layout, { weights: weights.tensors, kvCache: true, activations: 'float16', operators: 'fused' }).encode(), config);
    expect(half.cacheType).toBe('float16');
    expect(half.cacheMode).toBe('shared');
    const prefill = await half.forward(IDS.slice(0, 6));
    const step = await half.forward(IDS.slice(6, 7));
    const expected = referenceForward(weights, IDS.slice(0, 7));
    expect(relativeError(prefill, expected.slice(0, 6 * v))).toBeLessThan(1e-2);
    expect(relativeError(step, expected.slice(6 * v))).toBeLessThan(1e-2);
    await half.dispose();
  });

  it('head_dim 8 (no GroupQueryAttention kernel) keeps the standard attention with the fused norms and projections', async () => {
    const config = MODELS.llama;
    const weights = await loadDecoderWeights(randomDecoderSource(config, 9), config);
    const graph = buildDecoderGraph(config, weights.layout, { weights: weights.tensors, kvCache: true, operators: 'fused' });
    const counts = opCounts(graph);
    const bytes = graph.encode();
    expect(counts.GroupQueryAttention ?? 0).toBe(0);
    expect(counts.SkipSimplifiedLayerNormalization).toBe(2 * config.numLayers);
    const decoder = await createKvDecoder(bytes, config, { threads: 1 });
    expect(decoder.cacheMode).toBe('concat');
    const expected = referenceForward(weights, IDS);
    await decoder.forward(IDS.slice(0, 7));
    expect(relativeError(await decoder.forward(IDS.slice(7)), lastRows(expected, config.vocabSize, 1))).toBeLessThan(1e-5);
    await decoder.dispose();
  });
});
