import { InvalidOptionError, type DecoderConfig } from '@layerquant/core';
import { buildDecoderGraph, type WeightMode } from './decoder-graph.js';
import {
  loadDecoderWeights,
  withOverrides,
  type DecoderLayout,
  type DecoderWeights,
  type TensorSource,
  type WeightOverrides,
} from './decoder-weights.js';
import { createSession, floatTensor, int64Tensor, tensorData, type OrtSession, type OrtTensor, type RuntimeOptions } from './session.js';

/** Token ids of `batch` sequences of equal length, row-major. */
export interface TokenBatch {
  readonly ids: ArrayLike<number>;
  /** Number of sequences; the length is ids.length / batch. Default 1. */
  readonly batch?: number;
}

export interface DecoderModelOptions extends RuntimeOptions {
  /** Tensors that replace the source's (e.g. dequantized matrices). */
  readonly overrides?: WeightOverrides;
  /**
   * `initializers` (default below 1.5 GiB of weights): weights are baked into the session, which pre-packs them;
   * `inputs`: weights are fed on every run, so `setWeights` swaps them without building a new session and
   * the 2 GiB protobuf limit does not apply.
   */
  readonly weightMode?: WeightMode;
}

/** A loaded decoder: one onnxruntime session for all windows. */
export interface DecoderModel {
  readonly config: DecoderConfig;
  readonly layout: DecoderLayout;
  readonly weightMode: WeightMode;
  /** Logits [batch, T, vocab]. */
  logits(input: TokenBatch): Promise<Float32Array>;
  /** -log p(targets[b, t] | ids[b, 0..t]) for every position, [batch, T]; computed inside the graph (no logits copy). */
  tokenNll(input: TokenBatch, targets: ArrayLike<number>): Promise<Float32Array>;
  /** Logits [batch, T, vocab] and the NLL `tokenNll` gives, from one run (KL divergence and perplexity in one pass). */
  logitsAndNll(input: TokenBatch, targets: ArrayLike<number>): Promise<{ logits: Float32Array; nll: Float32Array }>;
  /** Replaces some weights (dequantized matrices, say); keeps the others. */
  setWeights(overrides: WeightOverrides): Promise<void>;
  /** The weights in use (float32, HF layout). */
  readonly weights: DecoderWeights;
  dispose(): Promise<void>;
}

const INITIALIZER_LIMIT_BYTES = 1.5 * 2 ** 30;

function batchDims(input: TokenBatch, vocabSize: number): [number, number] {
  const batch = input.batch ?? 1;
  if (!Number.isInteger(batch) || batch < 1 || input.ids.length % batch !== 0 || input.ids.length === 0) {
    throw new InvalidOptionError('batch', `${input.ids.length} token ids do not split into ${batch} sequences of equal, non-zero length`);
  }
  for (let i = 0; i < input.ids.length; i++) {
    const id = input.ids[i]!;
    if (!Number.isInteger(id) || id < 0 || id >= vocabSize) {
      throw new InvalidOptionError('ids', `token id ${id} at position ${i} is outside the vocabulary [0, ${vocabSize})`);
    }
  }
  return [batch, input.ids.length / batch];
}

/**
 * Loads a decoder from any tensor source (a checkpoint, a dequantizing quantized checkpoint, a map) and
 * builds its onnxruntime session once.
 */
export async function loadDecoderModel(source: TensorSource, config: DecoderConfig, options: DecoderModelOptions = {}): Promise<DecoderModel> {
  return createDecoderModel(await loadDecoderWeights(source, config, options.overrides), options);
}

/** A decoder model over weights already in memory. */
export async function createDecoderModel(initialWeights: DecoderWeights, options: DecoderModelOptions = {}): Promise<DecoderModel> {
  const { config, layout } = initialWeights;
  let weightBytes = 0;
  for (const data of initialWeights.tensors.values()) weightBytes += data.byteLength;
  const weightMode: WeightMode = options.weightMode ?? (weightBytes < INITIALIZER_LIMIT_BYTES ? 'initializers' : 'inputs');
  if (weightMode === 'initializers' && weightBytes >= 2 ** 31 - 2 ** 24) {
    throw new InvalidOptionError('weightMode', `${(weightBytes / 2 ** 30).toFixed(2)} GiB of weights exceed the 2 GiB ONNX protobuf limit; use weightMode "inputs"`);
  }
  let weights = initialWeights;
  let feeds: Record<string, OrtTensor> = {};
  let session: OrtSession;

  const build = async () => {
    if (weightMode === 'initializers') {
      session = await createSession(buildDecoderGraph(config, layout, { weights: weights.tensors, tokenNll: true }).encode(), options);
    } else {
      feeds = {};
      for (const [name, data] of weights.tensors) feeds[name] = floatTensor(data, weights.shapes.get(name)!);
    }
  };
  if (weightMode === 'inputs') session = await createSession(buildDecoderGraph(config, layout, { tokenNll: true }).encode(), options);
  await build();

  const runOutputs = async (input: TokenBatch, targets: ArrayLike<number> | undefined, outputs: readonly ('logits' | 'token_nll')[]) => {
    const dims = batchDims(input, config.vocabSize);
    if (targets && targets.length !== input.ids.length) {
      throw new InvalidOptionError('targets', `${targets.length} targets for ${input.ids.length} token ids; give one target per position`);
    }
    const result = await session.run(
      { ...feeds, input_ids: int64Tensor(input.ids, dims), targets: int64Tensor(targets ?? new Uint8Array(input.ids.length), dims) },
      [...outputs],
    );
    return outputs.map((output) => tensorData(result[output], output));
  };
  const run = async (input: TokenBatch, targets: ArrayLike<number> | undefined, output: 'logits' | 'token_nll') => (await runOutputs(input, targets, [output]))[0]!;

  return {
    config,
    layout,
    weightMode,
    get weights() {
      return weights;
    },
    logits: (input) => run(input, undefined, 'logits'),
    tokenNll: (input, targets) => run(input, targets, 'token_nll'),
    async logitsAndNll(input, targets) {
      const [logits, nll] = await runOutputs(input, targets, ['logits', 'token_nll']);
      return { logits: logits!, nll: nll! };
    },
    async setWeights(overrides) {
      weights = withOverrides(weights, overrides);
      if (weightMode === 'initializers') await session.release();
      await build();
    },
    async dispose() {
      await session.release();
    },
  };
}
