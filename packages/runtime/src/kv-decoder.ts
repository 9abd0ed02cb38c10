import { InvalidOptionError, type DecoderConfig } from '@layerquant/core';
import * as ort from 'onnxruntime-node';
import { createSession, int64Tensor, tensorData, type OrtSession, type OrtTensor, type RuntimeOptions } from './session.js';

/**
 * A decoder graph with a KV cache (buildKvDecoderGraph's, or any file with the same inputs and outputs, such as a
 * transformers.js export) run by onnxruntime-node, one sequence (batch 1) at a time.
 */
export interface KvDecoder {
  readonly config: DecoderConfig;
  /** Element type of the cache: float32, or float16 for a `_q4f16` graph. */
  readonly cacheType: 'float32' | 'float16';
  /** Tokens in the cache. */
  readonly cached: number;
  /** Logits [ids.length, vocab] of `ids` following the cached tokens; the cache grows by ids.length. */
  forward(ids: readonly number[]): Promise<Float32Array>;
  /** Empties the cache. */
  reset(): void;
  dispose(): Promise<void>;
}

/** Opens a KV-cache decoder from ONNX bytes or a file path (external data beside the file is found by onnxruntime). */
export async function createKvDecoder(model: Uint8Array | string, config: DecoderConfig, options: RuntimeOptions = {}): Promise<KvDecoder> {
  const session = await createSession(model, options);
  return kvDecoderOfSession(session, config);
}

export function kvDecoderOfSession(session: OrtSession, config: DecoderConfig): KvDecoder {
  const { numLayers, numKeyValueHeads: kvHeads, headDim, vocabSize } = config;
  const first = session.inputMetadata.find((m) => m.name === 'past_key_values.0.key');
  if (!first) throw new InvalidOptionError('model', 'the ONNX graph has no input "past_key_values.0.key"; it is not a decoder with a KV cache');
  const cacheType = first.isTensor && first.type === 'float16' ? 'float16' : 'float32';
  const empty = () => {
    const cache: Record<string, OrtTensor> = {};
    const data = cacheType === 'float16' ? new Uint16Array(0) : new Float32Array(0);
    for (let i = 0; i < numLayers; i++) {
      for (const part of ['key', 'value']) cache[`past_key_values.${i}.${part}`] = new ort.Tensor(cacheType, data, [1, kvHeads, 0, headDim]);
    }
    return cache;
  };
  let cache = empty();
  let cached = 0;
  const outputs = ['logits', ...Array.from({ length: numLayers }, (_, i) => [`present.${i}.key`, `present.${i}.value`]).flat()];
  return {
    config,
    cacheType,
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
          input_ids: int64Tensor(ids, [1, ids.length]),
          attention_mask: int64Tensor(new Uint8Array(total).fill(1), [1, total]),
          position_ids: int64Tensor(Array.from({ length: ids.length }, (_, t) => cached + t), [1, ids.length]),
        },
        outputs,
      );
      const next: Record<string, OrtTensor> = {};
      for (let i = 0; i < numLayers; i++) {
        for (const part of ['key', 'value']) next[`past_key_values.${i}.${part}`] = result[`present.${i}.${part}`]!;
      }
      for (const tensor of Object.values(cache)) tensor.dispose?.();
      cache = next;
      cached = total;
      return tensorData(result.logits, 'logits');
    },
    reset() {
      cache = empty();
      cached = 0;
    },
    dispose: () => session.release(),
  };
}

/** Index of the largest value in row `row` of a [rows, width] array (first one on ties, as torch.argmax). */
export function argmaxRow(values: ArrayLike<number>, width: number, row: number): number {
  let best = 0;
  let bestValue = -Infinity;
  for (let j = 0; j < width; j++) {
    const v = values[row * width + j]!;
    if (v > bestValue) {
      bestValue = v;
      best = j;
    }
  }
  return best;
}

export interface GreedyOptions {
  readonly maxNewTokens: number;
  /** Stop after emitting one of these (default: none). */
  readonly eosTokenIds?: readonly number[];
  readonly onToken?: (id: number) => void;
}

/** Greedy decoding with the KV cache: the prompt in one pass, then one token per step. Returns the new ids. */
export async function greedyDecode(decoder: KvDecoder, prompt: readonly number[], options: GreedyOptions): Promise<number[]> {
  if (!Number.isInteger(options.maxNewTokens) || options.maxNewTokens < 1) {
    throw new InvalidOptionError('maxNewTokens', `${options.maxNewTokens} must be a positive integer`);
  }
  decoder.reset();
  const vocab = decoder.config.vocabSize;
  const generated: number[] = [];
  let logits = await decoder.forward(prompt);
  let row = prompt.length - 1;
  for (;;) {
    const next = argmaxRow(logits, vocab, row);
    generated.push(next);
    options.onToken?.(next);
    if (generated.length >= options.maxNewTokens || options.eosTokenIds?.includes(next)) return generated;
    logits = await decoder.forward([next]);
    row = 0;
  }
}
