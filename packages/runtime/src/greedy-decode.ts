import { InvalidOptionError, type DecoderConfig } from '@layerquant/core';

// Greedy decoding over any KV-cache decoder (onnxruntime-node's or onnxruntime-web's session): browser-safe.

export interface ForwardOptions {
  /** Only the last position's logits ([1, vocab]): the graph computes no others where it can (num_logits_to_keep). */
  readonly lastOnly?: boolean;
}

/**
 * A decoder graph with a KV cache (buildDecoderGraph's, or any file with the same inputs and outputs, such as a
 * transformers.js export) run by onnxruntime (node or web), one sequence (batch 1) at a time.
 */
export interface KvDecoder {
  readonly config: DecoderConfig;
  /** Element type of the cache: float32, or float16 for a `_q4f16` graph. */
  readonly cacheType: 'float32' | 'float16';
  /** How the cache is kept: `shared` (preallocated buffers the attention writes in place), `concat` (past + new each step). */
  readonly cacheMode: 'shared' | 'concat';
  /** Tokens in the cache. */
  readonly cached: number;
  /**
   * Tokens the cache holds before it must grow: a shared cache's buffers (kept within a growth step of `cached`, since
   * each run copies them out); a concatenated cache's is `cached`.
   */
  readonly capacity: number;
  /** Logits [ids.length, vocab] of `ids` following the cached tokens ([1, vocab] with lastOnly); the cache grows by ids.length. */
  forward(ids: readonly number[], options?: ForwardOptions): Promise<Float32Array>;
  /**
   * The most tokens this sequence will hold (cached + to come): a shared cache grows in steps towards it and never
   * past it (it still grows past it if more tokens come). Reset forgets it.
   */
  reserve(tokens: number): void;
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
  /** Called with each new token, and once the prompt is processed (`index` 0 is the token the prompt gave). */
  readonly onToken?: (id: number, index: number) => void;
}

/** Greedy decoding with the KV cache: the prompt in one pass, then one token per step. Returns the new ids. */
export async function greedyDecode(decoder: KvDecoder, prompt: readonly number[], options: GreedyOptions): Promise<number[]> {
  if (!Number.isInteger(options.maxNewTokens) || options.maxNewTokens < 1) {
    throw new InvalidOptionError('maxNewTokens', `${options.maxNewTokens} must be a positive integer`);
  }
  decoder.reset();
  // The last token generated is never fed back, so the cache holds prompt + maxNewTokens - 1 tokens at most.
  decoder.reserve(prompt.length + options.maxNewTokens - 1);
  const vocab = decoder.config.vocabSize;
  const generated: number[] = [];
  let logits = await decoder.forward(prompt, { lastOnly: true });
  for (;;) {
    const next = argmaxRow(logits, vocab, logits.length / vocab - 1);
    generated.push(next);
    options.onToken?.(next, generated.length - 1);
    if (generated.length >= options.maxNewTokens || options.eosTokenIds?.includes(next)) return generated;
    logits = await decoder.forward([next], { lastOnly: true });
  }
}
