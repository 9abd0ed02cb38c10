import { InvalidOptionError, type DecoderConfig } from '@layerquant/core';
import * as ort from 'onnxruntime-node';
import type { KvDecoder } from './greedy-decode.js';
import { createSession, int64Tensor, tensorData, type OrtSession, type OrtTensor, type RuntimeOptions } from './session.js';

export { argmaxRow, greedyDecode, type GreedyOptions, type KvDecoder } from './greedy-decode.js';

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
