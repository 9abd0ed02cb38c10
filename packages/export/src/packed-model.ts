import { InvalidOptionError, type DecoderConfig } from '@layerquant/core';
import {
  createSession,
  emptyTensor,
  encodeModel,
  encodeModelWithExternalData,
  int64Tensor,
  kvDecoderOfSession,
  tensorData,
  type KvDecoder,
  type OrtSession,
  type OrtTensor,
  type RuntimeOptions,
  type TokenBatch,
} from '@layerquant/runtime';
import { trackTemporary, untrackTemporary } from '@layerquant/tensor-io';
import { mkdtempSync, rmSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { buildModelGraph, type ExportedMatrix, type ModelGraphSource, type OnnxExportOptions } from './export-onnx.js';

/** -log p(targets[t] | ...) per position from logits [T, vocab], with float64 log-sum-exp. */
export function nllFromLogits(logits: Float32Array, vocab: number, targets: ArrayLike<number>): Float32Array {
  const out = new Float32Array(targets.length);
  for (let t = 0; t < out.length; t++) {
    const row = logits.subarray(t * vocab, (t + 1) * vocab);
    let max = -Infinity;
    for (let j = 0; j < vocab; j++) if (row[j]! > max) max = row[j]!;
    let sum = 0;
    for (let j = 0; j < vocab; j++) sum += Math.exp(row[j]! - max);
    out[t] = max + Math.log(sum) - row[targets[t]!]!;
  }
  return out;
}

/** Logits [T, vocab] of one sequence through a KV-cache decoder graph with an empty cache, fetching only the logits. */
export function sessionLogits(session: OrtSession, config: DecoderConfig): (input: TokenBatch) => Promise<Float32Array> {
  const { numLayers, numKeyValueHeads: kvHeads, headDim, vocabSize } = config;
  const cacheType = session.inputMetadata.find((m) => m.name === 'past_key_values.0.key');
  const half = cacheType?.isTensor === true && cacheType.type === 'float16';
  return async (input) => {
    if ((input.batch ?? 1) !== 1) throw new InvalidOptionError('batch', 'the packed-weight model is evaluated one sequence at a time');
    const length = input.ids.length;
    for (let i = 0; i < length; i++) {
      const id = input.ids[i]!;
      if (!Number.isInteger(id) || id < 0 || id >= vocabSize) throw new InvalidOptionError('ids', `token id ${id} at position ${i} is outside the vocabulary [0, ${vocabSize})`);
    }
    const inputs = new Set(session.inputNames);
    const feeds: Record<string, OrtTensor> = {
      input_ids: int64Tensor(input.ids, [1, length]),
      attention_mask: int64Tensor(new Uint8Array(length).fill(1), [1, length]),
    };
    if (inputs.has('position_ids')) feeds.position_ids = int64Tensor(Array.from({ length }, (_, t) => t), [1, length]);
    if (inputs.has('num_logits_to_keep')) feeds.num_logits_to_keep = int64Tensor([0], []);
    for (let i = 0; i < numLayers; i++) {
      for (const part of ['key', 'value']) feeds[`past_key_values.${i}.${part}`] = emptyTensor(half ? 'float16' : 'float32', [1, kvHeads, 0, headDim]);
    }
    // Only the logits are fetched: the present key/values of a 512-token window would be copied out for nothing.
    const result = await session.run(feeds, ['logits']);
    return tensorData(result.logits, 'logits');
  };
}

/** Per-token NLL of one sequence through a KV-cache decoder graph with an empty cache (from its logits). */
export function sessionNll(session: OrtSession, config: DecoderConfig): (input: TokenBatch, targets: ArrayLike<number>) => Promise<Float32Array> {
  const logitsAndNll = sessionLogitsAndNll(session, config);
  return async (input, targets) => (await logitsAndNll(input, targets)).nll;
}

/** Logits and per-token NLL of one sequence from one run (KL divergence and perplexity in one pass). */
export function sessionLogitsAndNll(session: OrtSession, config: DecoderConfig): (input: TokenBatch, targets: ArrayLike<number>) => Promise<{ logits: Float32Array; nll: Float32Array }> {
  const logitsOf = sessionLogits(session, config);
  return async (input, targets) => {
    if (targets.length !== input.ids.length) throw new InvalidOptionError('targets', `${targets.length} targets for ${input.ids.length} token ids`);
    const logits = await logitsOf(input);
    return { logits, nll: nllFromLogits(logits, config.vocabSize, targets) };
  };
}

/**
 * Graphs with more initializer bytes than this reach onnxruntime as a temporary file with external data: the
 * JavaScript copy is freed before onnxruntime loads its own, where an in-memory protobuf would be a third copy.
 */
export const IN_MEMORY_GRAPH_LIMIT = 2 ** 28;

let collect: (() => void) | undefined;
/** A full garbage collection: frees the JavaScript copies of the packed weights before onnxruntime loads its own. */
function collectGarbage(): void {
  if (!collect) {
    setFlagsFromString('--expose-gc');
    collect = runInNewContext('gc') as () => void;
  }
  collect();
}

/**
 * The quantized model we ship, opened for evaluation: the KV-cache decoder graph of `buildModelGraph` (one
 * MatMulNBits per quantized matrix, exact HQQ zero correction) in one onnxruntime session, so memory is that of the
 * packed weights, never of float32 copies. `tokenNll` serves perplexity; `decoder` serves greedy generation.
 */
export interface PackedModel {
  readonly config: DecoderConfig;
  readonly matrices: readonly ExportedMatrix[];
  /** Bytes of the graph's initializers (packed linear weights, embeddings, norms). */
  readonly weightBytes: number;
  readonly quantized: boolean;
  readonly decoder: KvDecoder;
  tokenNll(input: TokenBatch, targets: ArrayLike<number>): Promise<Float32Array>;
  /** Logits [T, vocab] and the NLL `tokenNll` gives, from one run. */
  logitsAndNll(input: TokenBatch, targets: ArrayLike<number>): Promise<{ logits: Float32Array; nll: Float32Array }>;
  dispose(): Promise<void>;
}

export interface PackedModelOptions extends RuntimeOptions, OnnxExportOptions {
  /** Where a graph above `inMemoryLimit` is written for onnxruntime to read (default: the OS temp dir); removed after loading. */
  readonly tempDir?: string;
  /** Initializer bytes above which the graph goes through a temporary file (default IN_MEMORY_GRAPH_LIMIT). */
  readonly inMemoryLimit?: number;
}

/**
 * Opens a quantized checkpoint (or anything with `isQuantized`/`readQuantized`, such as an allocation quantized on
 * the fly) as a PackedModel. Accuracy level 0 by default: float activations inside MatMulNBits, whose results match
 * dequantize-then-matmul within 1e-6 (level 4, the export's default, quantizes activations to int8).
 */
export async function openPackedModel(source: ModelGraphSource, config: DecoderConfig, options: PackedModelOptions = {}): Promise<PackedModel> {
  const { tempDir, threads, inMemoryLimit = IN_MEMORY_GRAPH_LIMIT, ...graphOptions } = options;
  // A model to evaluate, not a file to ship: a quantizer whose codes MatMulNBits cannot hold runs on its dequantized weights.
  // The standard operators by default: evaluation reproduces the numbers measured before the fused graph existed.
  let built: Awaited<ReturnType<typeof buildModelGraph>> | undefined = await buildModelGraph(source, config, { accuracyLevel: 0, otherLayouts: 'float', operators: 'standard', ...graphOptions });
  const { matrices, quantized } = built;
  let model: ReturnType<typeof built.graph.toModel> | undefined = built.graph.toModel();
  built = undefined;
  const weightBytes = model.graph.initializers.reduce((sum, t) => sum + t.data.byteLength, 0);
  const runtime = threads ? { threads } : {};
  let session: OrtSession;
  if (weightBytes <= inMemoryLimit) {
    session = await createSession(encodeModel(model), runtime);
  } else {
    const dir = mkdtempSync(join(tempDir ?? tmpdir(), 'layerquant-packed-'));
    trackTemporary(dir);
    try {
      const file = join(dir, 'model.onnx');
      let encoded: ReturnType<typeof encodeModelWithExternalData> | undefined = encodeModelWithExternalData(model, 'model.onnx_data');
      model = undefined;
      await writeFile(join(dir, 'model.onnx_data'), encoded.data);
      await writeFile(file, encoded.model);
      encoded = undefined;
      collectGarbage();
      session = await createSession(file, runtime);
    } finally {
      rmSync(dir, { recursive: true, force: true });
      untrackTemporary(dir);
    }
  }
  return {
    config,
    matrices,
    weightBytes,
    quantized,
    decoder: kvDecoderOfSession(session, config),
    tokenNll: sessionNll(session, config),
    logitsAndNll: sessionLogitsAndNll(session, config),
    dispose: () => session.release(),
  };
}
