import { buildDecoderGraph, type DecoderWeights } from '@layerquant/runtime/graph';
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

/** Greedy decoding: the argmax of the last position's logits (first index on ties), `count` times, full recompute. */
export async function greedyDecode(
  model: Pick<WebDecoder, 'logits'>,
  prompt: readonly number[],
  count: number,
  vocabSize: number,
  onToken?: (id: number, done: number) => void,
): Promise<number[]> {
  const ids = [...prompt];
  const generated: number[] = [];
  for (let step = 0; step < count; step++) {
    const logits = await model.logits({ ids });
    const last = logits.subarray((ids.length - 1) * vocabSize, ids.length * vocabSize);
    let best = 0;
    for (let v = 1; v < vocabSize; v++) if (last[v]! > last[best]!) best = v;
    ids.push(best);
    generated.push(best);
    onToken?.(best, step + 1);
  }
  return generated;
}
