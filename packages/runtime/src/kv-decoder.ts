import { InvalidDataError, InvalidOptionError, type DecoderConfig } from '@layerquant/core';
import type { KvDecoder } from './greedy-decode.js';
import { backend, createSession, type OrtSession, type OrtTensor as Tensor, type RuntimeOptions } from './session.js';

export type { ForwardOptions, KvDecoder } from './greedy-decode.js';

/** Where a graph comes from, for the errors of its checks. */
export interface GraphSource {
  readonly file?: string;
  readonly configFile?: string;
}

export interface KvDecoderOptions extends GraphSource {
  /**
   * `shared`: the past and present of each layer are one preallocated buffer the attention writes in place (the
   * fused graph's GroupQueryAttention, on a backend that writes outputs in place: onnxruntime-node); `concat`: each
   * step's present becomes the next past (any graph, any backend). Default: shared where it can be, else concat.
   */
  readonly cacheMode?: 'shared' | 'concat';
}

type CacheData = Float32Array | Uint16Array;

/**
 * A shared cache grows in steps of this many tokens. onnxruntime-node 1.30 copies every fetched output into a new
 * ArrayBuffer when a run returns, the in-place presents included, so each step costs a copy of the whole cache
 * buffer: a buffer sized to the context the caller might reach made every step pay for the longest one (a step with
 * room for 1,024 tokens took 2.3x one with room for 127, the same tokens held). Kept within a step of the tokens in
 * it, the copy grows with the tokens only.
 */
export const KV_CACHE_STEP_TOKENS = 64;

/** Opens a KV-cache decoder from ONNX bytes or a file path (external data beside the file is found by onnxruntime). */
export async function createKvDecoder(model: Uint8Array | string, config: DecoderConfig, options: RuntimeOptions & KvDecoderOptions = {}): Promise<KvDecoder> {
  const { cacheMode, configFile, file: _file, ...runtime } = options;
  const session = await createSession(model, runtime);
  try {
    return kvDecoderOfSession(session, config, {
      ...(cacheMode ? { cacheMode } : {}),
      ...(typeof model === 'string' ? { file: model, ...(configFile ? { configFile } : {}) } : {}),
    });
  } catch (error) {
    await session.release();
    throw error;
  }
}

/** A graph input or output as a decoder check sees it: its name and, where known, its shape (numbers or symbols). */
export interface GraphValue {
  readonly name: string;
  readonly shape?: ReadonlyArray<number | string>;
}

/**
 * Checks the inputs and outputs of a KV-cache decoder graph against the config that is to run it: input_ids and
 * logits present, exactly num_hidden_layers key/value cache pairs, the cache's fixed head count and head dim, and the
 * logits' vocabulary. A graph and a config.json that disagree (an export whose config.json was edited or belongs to
 * another model) are an InvalidDataError naming the file and the field, never logits read with the wrong stride.
 * The one check for an ONNX session (onnxruntime's metadata) and for an ONNX file read by `inspect` (its protobuf).
 */
export function checkDecoderGraph(inputs: readonly GraphValue[], outputs: readonly GraphValue[], config: DecoderConfig, where: GraphSource = {}): void {
  const file = where.file ?? 'the ONNX graph';
  const configFile = where.configFile ?? 'config.json';
  const fail = (message: string): never => {
    throw new InvalidDataError(file, `${message}; ${configFile} does not describe this graph (export the model again, or restore its config.json)`);
  };
  const byName = new Map([...inputs, ...outputs].map((v) => [v.name, v]));
  if (!byName.has('input_ids') || !byName.has('past_key_values.0.key')) {
    throw new InvalidDataError(file, 'the graph has no input "input_ids" or "past_key_values.0.key": it is not a decoder with a KV cache as `layerquant export` writes it; export the model again');
  }
  const logits = outputs.find((v) => v.name === 'logits');
  if (!logits) throw new InvalidDataError(file, 'the graph has no output "logits"; export the model again');
  let layers = 0;
  while (byName.has(`past_key_values.${layers}.key`)) layers++;
  if (layers !== config.numLayers) fail(`the graph has ${layers} layers of key/value cache but num_hidden_layers is ${config.numLayers}`);
  for (let i = 0; i < layers; i++) {
    for (const part of ['key', 'value']) {
      const value = byName.get(`past_key_values.${i}.${part}`);
      if (!value) fail(`the graph has no input "past_key_values.${i}.${part}"`);
      const shape = value!.shape ?? [];
      if (typeof shape[1] === 'number' && shape[1] !== config.numKeyValueHeads) fail(`"past_key_values.${i}.${part}" has ${shape[1]} key/value heads but num_key_value_heads is ${config.numKeyValueHeads}`);
      if (typeof shape[3] === 'number' && shape[3] !== config.headDim) fail(`"past_key_values.${i}.${part}" has head dimension ${shape[3]} but head_dim is ${config.headDim}`);
    }
  }
  const vocab = logits.shape?.at(-1);
  if (typeof vocab === 'number' && vocab !== config.vocabSize) fail(`the graph's logits have ${vocab} columns but vocab_size is ${config.vocabSize}`);
}

/**
 * A KvDecoder over an onnxruntime session of a decoder graph with a KV cache (`input_ids`, `attention_mask`,
 * `past_key_values.{i}.key/.value`, optionally `position_ids` and `num_logits_to_keep` -> `logits`, `present.*`).
 *
 * In the shared mode nothing is rebuilt per step: the cache buffers, their tensors, the mask and the fetch list are
 * made once per growth step (KV_CACHE_STEP_TOKENS); each step passes the new ids and views of the mask.
 * onnxruntime-node 1.30 still copies every fetched output into a new ArrayBuffer on return, so the buffers are kept
 * within a growth step of the tokens they hold, and never beyond what the caller reserves.
 */
export function kvDecoderOfSession(session: OrtSession, config: DecoderConfig, options: KvDecoderOptions = {}): KvDecoder {
  const { numLayers, numKeyValueHeads: kvHeads, headDim, vocabSize } = config;
  const { Tensor: OrtTensor } = backend;
  const inputs = new Set(session.inputNames);
  const metadata = (list: OrtSession['inputMetadata']): GraphValue[] => list.map((m) => (m.isTensor ? { name: m.name, shape: m.shape } : { name: m.name }));
  checkDecoderGraph(metadata(session.inputMetadata), metadata(session.outputMetadata), config, options);
  const first = session.inputMetadata.find((m) => m.name === 'past_key_values.0.key')!;
  const cacheType = first.isTensor && first.type === 'float16' ? 'float16' : 'float32';
  const positionIds = inputs.has('position_ids');
  const keepLogits = inputs.has('num_logits_to_keep');
  const cacheMode = options.cacheMode ?? (positionIds || !backend.writesOutputsInPlace ? 'concat' : 'shared');
  if (cacheMode === 'shared' && !backend.writesOutputsInPlace) {
    throw new InvalidOptionError('cacheMode', `${backend.name} does not write outputs into the tensors given for them; use the concat cache`);
  }
  if (cacheMode !== 'shared' && cacheMode !== 'concat') throw new InvalidOptionError('cacheMode', `"${String(cacheMode)}" must be "shared" or "concat"`);
  const pastNames = Array.from({ length: numLayers }, (_, i) => [`past_key_values.${i}.key`, `past_key_values.${i}.value`]).flat();
  const presentNames = Array.from({ length: numLayers }, (_, i) => [`present.${i}.key`, `present.${i}.value`]).flat();
  const newCache = (length: number): CacheData => (cacheType === 'float16' ? new Uint16Array(length) : new Float32Array(length));
  const keepAll = new OrtTensor('int64', BigInt64Array.of(0n), []);
  const keepLast = new OrtTensor('int64', BigInt64Array.of(1n), []);
  const int64 = (values: ArrayLike<number>, offset = 0) => {
    const data = new BigInt64Array(values.length);
    for (let i = 0; i < values.length; i++) data[i] = BigInt(values[i]! + offset);
    return new OrtTensor('int64', data, [1, values.length]);
  };

  let cached = 0;
  // concat mode: the last presents. shared mode: one buffer per past input, `capacity` tokens long.
  let past: Record<string, Tensor> = {};
  let buffers: CacheData[] = [];
  let capacity = 0;
  // The most tokens the caller said it will run (reserve): growth stops there. Infinity until then.
  let limit = Number.POSITIVE_INFINITY;
  let mask = new BigInt64Array(0);
  const stepIds = new BigInt64Array(1);
  const stepTensor = new OrtTensor('int64', stepIds, [1, 1]);

  const emptyPast = () => {
    past = {};
    for (const name of pastNames) past[name] = new OrtTensor(cacheType, newCache(0), [1, kvHeads, 0, headDim]);
  };
  /** Shared mode: buffers for `tokens`, the cached tokens of the old ones copied over (per head: [tokens, headDim] rows). */
  const allocate = (tokens: number) => {
    const next = pastNames.map(() => newCache(kvHeads * tokens * headDim));
    if (cached > 0) {
      for (const [i, old] of buffers.entries()) {
        for (let head = 0; head < kvHeads; head++) {
          next[i]!.set(old.subarray(head * capacity * headDim, (head * capacity + cached) * headDim), head * tokens * headDim);
        }
      }
    }
    buffers = next;
    capacity = tokens;
    past = {};
    for (const [i, name] of pastNames.entries()) past[name] = new OrtTensor(cacheType, buffers[i]!, [1, kvHeads, tokens, headDim]);
    mask = new BigInt64Array(tokens).fill(1n);
  };
  /** Shared mode: room for `total` tokens, the next step of KV_CACHE_STEP_TOKENS above it, never past the reserved limit. */
  const grow = (total: number) => {
    const stepped = Math.ceil(total / KV_CACHE_STEP_TOKENS) * KV_CACHE_STEP_TOKENS;
    allocate(total <= limit ? Math.min(stepped, limit) : stepped);
  };
  const reset = () => {
    cached = 0;
    limit = Number.POSITIVE_INFINITY;
    // A new sequence starts small again: a long one before it would make every step of this one copy its buffers.
    buffers = [];
    capacity = 0;
    if (cacheMode === 'concat') emptyPast();
  };
  reset();

  return {
    config,
    cacheType,
    cacheMode,
    get cached() {
      return cached;
    },
    get capacity() {
      return cacheMode === 'shared' ? capacity : cached;
    },
    reserve(tokens) {
      if (!Number.isInteger(tokens) || tokens < 1) throw new InvalidOptionError('tokens', `${tokens} must be a positive integer`);
      limit = tokens;
    },
    async forward(ids, forwardOptions = {}) {
      if (ids.length === 0) throw new InvalidOptionError('ids', 'at least one token id is needed');
      for (const id of ids) {
        if (!Number.isInteger(id) || id < 0 || id >= vocabSize) throw new InvalidOptionError('ids', `token id ${id} is outside the vocabulary [0, ${vocabSize})`);
      }
      const total = cached + ids.length;
      const lastOnly = forwardOptions.lastOnly === true;
      let inputIds: Tensor;
      if (ids.length === 1) {
        stepIds[0] = BigInt(ids[0]!);
        inputIds = stepTensor;
      } else {
        inputIds = int64(ids);
      }
      if (cacheMode === 'shared' && total > capacity) grow(total);
      const feeds: Record<string, Tensor> = { ...past, input_ids: inputIds };
      if (positionIds) feeds.position_ids = int64(Array.from({ length: ids.length }, (_, t) => t), cached);
      if (keepLogits) feeds.num_logits_to_keep = lastOnly ? keepLast : keepAll;
      let fetches: Record<string, Tensor | null>;
      if (cacheMode === 'shared') {
        feeds.attention_mask = new OrtTensor('int64', mask.subarray(0, total), [1, total]);
        // The presents are the pasts' own buffers: the attention writes the new keys and values in place.
        fetches = { logits: null };
        for (const [i, name] of presentNames.entries()) fetches[name] = past[pastNames[i]!]!;
      } else {
        feeds.attention_mask = new OrtTensor('int64', new BigInt64Array(total).fill(1n), [1, total]);
        fetches = { logits: null };
        for (const name of presentNames) fetches[name] = null;
      }
      const result = await session.run(feeds, fetches);
      if (cacheMode === 'concat') {
        const next: Record<string, Tensor> = {};
        for (const [i, name] of pastNames.entries()) next[name] = result[presentNames[i]!]!;
        for (const tensor of Object.values(past)) tensor.dispose?.();
        past = next;
      }
      cached = total;
      const logits = result.logits;
      if (!logits || !(logits.data instanceof Float32Array)) throw new RangeError('onnxruntime returned no float32 output "logits"');
      // A graph with symbolic logits dims is checked here: read with another stride, logits would be silently wrong.
      if (logits.dims.at(-1) !== vocabSize) {
        throw new InvalidDataError(options.file ?? 'the ONNX graph', `returned logits with ${logits.dims.at(-1)} columns but vocab_size is ${vocabSize}; ${options.configFile ?? 'config.json'} does not describe this graph`);
      }
      // A graph without num_logits_to_keep computes every row: the last one is the view asked for.
      return lastOnly && logits.data.length > vocabSize ? logits.data.subarray(logits.data.length - vocabSize) : logits.data;
    },
    reset,
    dispose: () => session.release(),
  };
}
