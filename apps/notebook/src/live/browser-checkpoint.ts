import { InvalidDataError, MissingFileError, MissingTensorError, SafetensorsFormatError, type DecoderConfig, type WeightTensor } from '@layerquant/core';
import {
  MAX_HEADER_BYTES,
  decodeToFloat32,
  parseDecoderConfig,
  parseSafetensorsHeader,
  summarizeModel,
  type ModelSummary,
  type TensorInfo,
} from '@layerquant/tensor-io/browser';
import type { ModelFiles } from './model-files.js';

const INDEX_NAME = 'model.safetensors.index.json';

/** A checkpoint read in the page: headers up front, each tensor on demand (the tensor-io reader, without node:fs). */
export interface BrowserCheckpoint {
  readonly name: string;
  readonly config: DecoderConfig;
  readonly files: readonly string[];
  readonly tensors: readonly TensorInfo[];
  readonly summary: ModelSummary;
  has(name: string): boolean;
  read(name: string): Promise<WeightTensor>;
  readonly dir: string;
}

async function jsonOf(files: ModelFiles, path: string, hint: string): Promise<unknown> {
  if (!files.has(path)) throw new MissingFileError(`${files.name}/${path}`, hint);
  const text = await files.text(path);
  try {
    return JSON.parse(text);
  } catch (error) {
    throw new InvalidDataError(`${files.name}/${path}`, `is not valid JSON (${error instanceof Error ? error.message : String(error)})`);
  }
}

async function shardsOf(files: ModelFiles): Promise<{ shards: string[]; weightMap?: Record<string, string> }> {
  if (files.has(INDEX_NAME)) {
    const index = (await jsonOf(files, INDEX_NAME, '')) as { weight_map?: Record<string, string> };
    if (!index.weight_map || typeof index.weight_map !== 'object') {
      throw new SafetensorsFormatError(`${files.name}/${INDEX_NAME}`, 'has no "weight_map" object mapping tensor names to shard files');
    }
    const shards: string[] = [];
    for (const [tensor, shard] of Object.entries(index.weight_map)) {
      if (shards.includes(shard)) continue;
      if (!files.has(shard)) {
        throw new MissingFileError(`${files.name}/${shard}`, `shard named by ${INDEX_NAME} for tensor "${tensor}" is missing; pick the directory with every shard`);
      }
      shards.push(shard);
    }
    return { shards, weightMap: index.weight_map };
  }
  if (files.has('model.safetensors')) return { shards: ['model.safetensors'] };
  const found = files.list().filter((f) => f.endsWith('.safetensors') && !f.includes('/')).sort();
  if (found.length === 0) {
    throw new MissingFileError(files.name, `has no model.safetensors, no ${INDEX_NAME} and no *.safetensors file; pick a Hugging Face model directory`);
  }
  return { shards: found };
}

async function headerOf(files: ModelFiles, shard: string) {
  const size = await files.size(shard);
  const where = `${files.name}/${shard}`;
  const lengthBytes = await files.bytes(shard, 0, Math.min(8, size));
  if (size < 8) return parseSafetensorsHeader(lengthBytes, size, where);
  const headerLength = Number(new DataView(lengthBytes.buffer, lengthBytes.byteOffset, 8).getBigUint64(0, true));
  if (headerLength > MAX_HEADER_BYTES || 8 + headerLength > size) return parseSafetensorsHeader(lengthBytes, size, where);
  return parseSafetensorsHeader(await files.bytes(shard, 0, 8 + headerLength), size, where);
}

/** Opens the model of a directory: config.json, the safetensors headers (single file or sharded with its index). */
export async function openBrowserCheckpoint(files: ModelFiles): Promise<BrowserCheckpoint> {
  const config = parseDecoderConfig(
    await jsonOf(files, 'config.json', 'not found; the directory needs the config.json of its Hugging Face checkpoint'),
    `${files.name}/config.json`,
  );
  const { shards, weightMap } = await shardsOf(files);
  const headers = await Promise.all(shards.map((s) => headerOf(files, s)));
  const byName = new Map<string, { info: TensorInfo; shard: string }>();
  for (const [i, header] of headers.entries()) {
    for (const info of header.tensors) {
      if (byName.has(info.name)) throw new SafetensorsFormatError(info.file, `tensor also stored in ${byName.get(info.name)!.info.file}; the checkpoint has duplicate tensors`, info.name);
      byName.set(info.name, { info, shard: shards[i]! });
    }
  }
  if (weightMap) {
    for (const [name, shard] of Object.entries(weightMap)) {
      if (!byName.has(name)) throw new MissingTensorError(name, `${files.name}/${shard}`, `${INDEX_NAME} lists it there; the shard is incomplete or the index is stale`);
    }
  }
  const tensors = Object.freeze([...byName.values()].map((t) => t.info));
  return {
    name: files.name,
    dir: files.name,
    config,
    files: shards,
    tensors,
    summary: summarizeModel(files.name, config, tensors, shards.length),
    has: (name) => byName.has(name),
    async read(name) {
      const entry = byName.get(name);
      if (!entry) throw new MissingTensorError(name, files.name, 'check the tensor name (e.g. model.layers.0.self_attn.q_proj.weight)');
      const { info, shard } = entry;
      const raw = await files.bytes(shard, info.byteOffset, info.byteOffset + info.byteLength);
      if (raw.byteLength !== info.byteLength) throw new SafetensorsFormatError(info.file, 'file ended while reading the tensor; it is truncated', name);
      return { name, dtype: info.dtype, shape: info.shape, data: decodeToFloat32(raw, info.dtype) };
    },
  };
}
