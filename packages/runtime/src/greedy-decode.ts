import { InvalidOptionError, type DecoderConfig } from '@layerquant/core';

// Greedy decoding over any KV-cache decoder (onnxruntime-node's in kv-decoder.ts, onnxruntime-web's in a page): browser-safe.

/**
 * A decoder graph with a KV cache (buildKvDecoderGraph's, or any file with the same inputs and outputs, such as a
 * transformers.js export) run by onnxruntime (node or web), one sequence (batch 1) at a time.
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
