import { buildDecoderGraph, buildKvDecoderGraph, type DecoderWeights, type KvDecoder } from '@layerquant/runtime/graph';
import { InvalidOptionError } from '@layerquant/core';
import * as ort from 'onnxruntime-web/wasm';

// One thread: the page is not cross-origin isolated (no SharedArrayBuffer), and the numbers stay reproducible.
ort.env.wasm.numThreads = 1;

/**
 * The runtime package's decoder graph (`buildDecoderGraph`, weights as initializers, per-token NLL in the graph)
 * run by onnxruntime-web's WebAssembly backend: what `loadDecoderModel` is in Node, for a page.
 * It has the `tokenNll` the perplexity package needs and the logits greedy decoding needs.
 */
export interface WebDecoder {
  readonly weights: DecoderWeights;
  tokenNll(input: { ids: ArrayLike<number> }, targets: ArrayLike<number>): Promise<Float32Array>;
  logits(input: { ids: ArrayLike<number> }): Promise<Float32Array>;
  release(): Promise<void>;
}

function int64(values: ArrayLike<number>): ort.Tensor {
  const data = new BigInt64Array(values.length);
  for (let i = 0; i < values.length; i++) data[i] = BigInt(values[i]!);
  return new ort.Tensor('int64', data, [1, values.length]);
}

export async function createWebDecoder(weights: DecoderWeights): Promise<WebDecoder> {
  const { config, layout } = weights;
  const graph = buildDecoderGraph(config, layout, { weights: weights.tensors, tokenNll: true }).encode();
  const session = await ort.InferenceSession.create(graph, { graphOptimizationLevel: 'all', executionMode: 'sequential' });
  const check = (ids: ArrayLike<number>) => {
    if (ids.length === 0) throw new InvalidOptionError('ids', 'no token ids to run');
    for (let i = 0; i < ids.length; i++) {
      const id = ids[i]!;
      if (!Number.isInteger(id) || id < 0 || id >= config.vocabSize) {
        throw new InvalidOptionError('ids', `token id ${id} at position ${i} is outside the vocabulary [0, ${config.vocabSize})`);
      }
    }
  };
  const run = async (ids: ArrayLike<number>, targets: ArrayLike<number>, output: 'logits' | 'token_nll') => {
    check(ids);
    const result = await session.run({ input_ids: int64(ids), targets: int64(targets) }, [output]);
    const tensor = result[output];
    if (!tensor || !(tensor.data instanceof Float32Array)) throw new RangeError(`onnxruntime-web returned no float32 output "${output}"`);
    return tensor.data;
  };
  return {
    weights,
    tokenNll: (input, targets) => {
      if (targets.length !== input.ids.length) throw new InvalidOptionError('targets', `${targets.length} targets for ${input.ids.length} token ids`);
      return run(input.ids, targets, 'token_nll');
    },
    logits: (input) => run(input.ids, new Uint8Array(input.ids.length), 'logits'),
    release: () => session.release(),
  };
}

/**
 * The runtime package's KV-cache decoder graph (`buildKvDecoderGraph`, the graph `layerquant generate` runs, here
 * over float32 weights: the float model's, or the quantized model's dequantized ones) as a `KvDecoder` for the
 * runtime's `greedyDecode`, run by onnxruntime-web. onnxruntime-web's WebAssembly backend runs MatMulNBits as
 * dequantize-then-matmul (40-70x slower than a float Gemm at one token), so the page feeds the dequantized
 * matrices: the same values the packed weights decode to.
 */
export async function createWebKvDecoder(weights: DecoderWeights): Promise<KvDecoder & { release(): Promise<void> }> {
  const { config, layout } = weights;
  const graph = buildKvDecoderGraph(config, layout, { weights: weights.tensors, accuracyLevel: 0 }).encode();
  const session = await ort.InferenceSession.create(graph, { graphOptimizationLevel: 'all', executionMode: 'sequential' });
  const { numLayers, numKeyValueHeads: kvHeads, headDim, vocabSize } = config;
  const empty = () => {
    const cache: Record<string, ort.Tensor> = {};
    for (let i = 0; i < numLayers; i++) {
      for (const part of ['key', 'value']) cache[`past_key_values.${i}.${part}`] = new ort.Tensor('float32', new Float32Array(0), [1, kvHeads, 0, headDim]);
    }
    return cache;
  };
  const ints = (values: ArrayLike<number>, length: number) => {
    const data = new BigInt64Array(length);
    for (let i = 0; i < length; i++) data[i] = BigInt(values[i]!);
    return new ort.Tensor('int64', data, [1, length]);
  };
  const outputs = ['logits', ...Array.from({ length: numLayers }, (_, i) => [`present.${i}.key`, `present.${i}.value`]).flat()];
  let cache = empty();
  let cached = 0;
  return {
    config,
    cacheType: 'float32',
    get cached() {
      return cached;
    },
    async forward(ids) {
      if (ids.length === 0) throw new InvalidOptionError('ids', 'at least one token id is needed');
      for (const id of ids) {
        if (!Number.isInteger(id) || id < 0 || id >= vocabSize) throw new InvalidOptionError('ids', `token id ${id} is outside the vocabulary [0, ${vocabSize})`);
      }
      const total = cached + ids.length;
      const result = await session.run(
        {
          ...cache,
          input_ids: ints(ids, ids.length),
          attention_mask: ints(new Uint8Array(total).fill(1), total),
          position_ids: ints(Array.from({ length: ids.length }, (_, t) => cached + t), ids.length),
        },
        outputs,
      );
      const next: Record<string, ort.Tensor> = {};
      for (let i = 0; i < numLayers; i++) {
        for (const part of ['key', 'value']) next[`past_key_values.${i}.${part}`] = result[`present.${i}.${part}`]!;
      }
      for (const tensor of Object.values(cache)) tensor.dispose();
      cache = next;
      cached = total;
      const logits = result.logits;
      if (!logits || !(logits.data instanceof Float32Array)) throw new RangeError('onnxruntime-web returned no float32 logits');
      return logits.data;
    },
    reset() {
      cache = empty();
      cached = 0;
    },
    dispose: () => session.release(),
    release: () => session.release(),
  };
}
