import { InvalidDataError, InvalidOptionError, type DecoderConfig } from '@layerquant/core';
import * as ort from 'onnxruntime-node';
import type { KvDecoder } from './greedy-decode.js';
import { createSession, int64Tensor, tensorData, type OrtSession, type OrtTensor, type RuntimeOptions } from './session.js';

export { argmaxRow, greedyDecode, type GreedyOptions, type KvDecoder } from './greedy-decode.js';

/** Opens a KV-cache decoder from ONNX bytes or a file path (external data beside the file is found by onnxruntime). */
export async function createKvDecoder(model: Uint8Array | string, config: DecoderConfig, options: RuntimeOptions & { readonly configFile?: string } = {}): Promise<KvDecoder> {
  const session = await createSession(model, options);
  try {
    return kvDecoderOfSession(session, config, typeof model === 'string' ? { file: model, ...(options.configFile ? { configFile: options.configFile } : {}) } : {});
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
export function checkDecoderGraph(inputs: readonly GraphValue[], outputs: readonly GraphValue[], config: DecoderConfig, where: { file?: string; configFile?: string } = {}): void {
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

export function kvDecoderOfSession(session: OrtSession, config: DecoderConfig, where: { file?: string; configFile?: string } = {}): KvDecoder {
  const { numLayers, numKeyValueHeads: kvHeads, headDim, vocabSize } = config;
  const metadata = (list: OrtSession['inputMetadata']): GraphValue[] => list.map((m) => (m.isTensor ? { name: m.name, shape: m.shape } : { name: m.name }));
  checkDecoderGraph(metadata(session.inputMetadata), metadata(session.outputMetadata), config, where);
  const first = session.inputMetadata.find((m) => m.name === 'past_key_values.0.key')!;
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
      // A graph with symbolic logits dims is checked here: read with another stride, logits would be silently wrong.
      const logitsDims = result.logits?.dims;
      if (logitsDims && logitsDims.at(-1) !== vocabSize) {
        throw new InvalidDataError(where.file ?? 'the ONNX graph', `returned logits with ${logitsDims.at(-1)} columns but vocab_size is ${vocabSize}; ${where.configFile ?? 'config.json'} does not describe this graph`);
      }
      return tensorData(result.logits, 'logits');
    },
    reset() {
      cache = empty();
      cached = 0;
    },
    dispose: () => session.release(),
  };
}
