import {
  InvalidDataError,
  MissingFileError,
  MissingTensorError,
  SafetensorsFormatError,
  validateCheckpoint,
  type DecoderConfig,
  type DecoderLayout,
  type WeightTensor,
} from '@layerquant/core';
import { parseDecoderConfig } from './decoder-config.js';
import { decodeToFloat32 } from './dtype.js';
import { checkFinite } from './finite.js';
import { MAX_HEADER_BYTES, parseSafetensorsHeader, type SafetensorsHeader, type TensorInfo } from './safetensors-header.js';

// Reading a model through a file-access port (browser-safe): the Node reader (node-files.ts) and a page (files
// fetched over HTTP, or a directory picked with the File API) open checkpoints, config.json and the tokenizer with
// this one code.

/**
 * The files of a model directory, however they are reached. Paths are relative to the directory (`config.json`,
 * `model-00001-of-00004.safetensors`); messages name a file `${name}/${path}`.
 */
export interface ModelFiles {
  /** The directory (an absolute path in Node, a URL or the picked folder's name in a page). */
  readonly name: string;
  /** Every file known (for a served directory, those its manifest lists). */
  list(): readonly string[];
  has(path: string): boolean;
  size(path: string): Promise<number>;
  /** Bytes [start, end) of a file (the whole file without a range); fewer at its end. */
  bytes(path: string, start?: number, end?: number): Promise<Uint8Array>;
  text(path: string): Promise<string>;
  /** Releases what reading holds (open file handles). */
  close?(): Promise<void>;
}

/** Anything that hands out float32 weights by tensor name: a checkpoint, a quantized checkpoint, a test double. */
export interface WeightSource {
  readonly tensors: readonly TensorInfo[];
  has(name: string): boolean;
  read(name: string): Promise<WeightTensor>;
}

/** A model's weights; tensors are read lazily, one at a time, so a large model never sits in memory twice. */
export interface Checkpoint extends WeightSource {
  /** Directory of the model (config.json, tokenizer files). */
  readonly dir: string;
  /** The safetensors files, in index order. */
  readonly files: readonly string[];
  /** `__metadata__` of the first file. */
  readonly metadata: Readonly<Record<string, string>>;
  info(name: string): TensorInfo;
  /** The stored bytes, unchecked (read() also refuses NaN and infinities with a NonFiniteWeightError). */
  readRaw(name: string): Promise<Uint8Array>;
  close(): Promise<void>;
}

export const INDEX_NAME = 'model.safetensors.index.json';

/** `${files.name}/${path}`: how messages name a file of the directory. */
export function filePath(files: Pick<ModelFiles, 'name'>, path: string): string {
  return files.name.endsWith('/') ? `${files.name}${path}` : `${files.name}/${path}`;
}

/** The safetensors files of a model and, when sharded, its index's weight map. */
export interface CheckpointShards {
  /** Paths relative to the directory, in index order. */
  readonly shards: readonly string[];
  readonly index?: string;
  readonly weightMap?: Readonly<Record<string, string>>;
}

/** Reads the shard list of `index` (model.safetensors.index.json): every shard named must be a file beside it. */
export async function readShardIndex(files: ModelFiles, index: string): Promise<CheckpointShards> {
  const where = filePath(files, index);
  let json: { weight_map?: Record<string, string> };
  try {
    json = JSON.parse(await files.text(index)) as { weight_map?: Record<string, string> };
  } catch (error) {
    throw new SafetensorsFormatError(where, 'is not valid JSON; the index is corrupt, download it again', undefined, { cause: error });
  }
  if (!json.weight_map || typeof json.weight_map !== 'object') {
    throw new SafetensorsFormatError(where, 'has no "weight_map" object mapping tensor names to shard files');
  }
  const shards: string[] = [];
  for (const [tensor, shard] of Object.entries(json.weight_map)) {
    if (typeof shard !== 'string' || !shard.endsWith('.safetensors') || shard.includes('/') || shard.includes('\\')) {
      throw new SafetensorsFormatError(where, `weight_map maps the tensor to ${JSON.stringify(shard)}, not to a .safetensors file beside the index; the index is corrupt`, tensor);
    }
    if (shards.includes(shard)) continue;
    if (!files.has(shard)) {
      throw new MissingFileError(filePath(files, shard), `shard named by ${index} for tensor "${tensor}" is missing; download every shard of the model`);
    }
    shards.push(shard);
  }
  return { shards, index, weightMap: json.weight_map };
}

/** The safetensors files of a model directory: its index's shards, else model.safetensors, else every *.safetensors. */
export async function findShards(files: ModelFiles): Promise<CheckpointShards> {
  if (files.has(INDEX_NAME)) return readShardIndex(files, INDEX_NAME);
  if (files.has('model.safetensors')) return { shards: ['model.safetensors'] };
  const found = files.list().filter((f) => f.endsWith('.safetensors') && !f.includes('/')).sort();
  if (found.length === 0) {
    throw new MissingFileError(files.name, `has no model.safetensors, no ${INDEX_NAME} and no *.safetensors file; point to a Hugging Face model directory`);
  }
  return { shards: found };
}

/** Reads and validates only the header of a safetensors file (a few KB, whatever the model size). */
export async function readShardHeader(files: ModelFiles, shard: string): Promise<SafetensorsHeader> {
  const where = filePath(files, shard);
  const size = await files.size(shard);
  const lengthBytes = await files.bytes(shard, 0, Math.min(8, size));
  if (size < 8) return parseSafetensorsHeader(lengthBytes, size, where);
  const rawLength = new DataView(lengthBytes.buffer, lengthBytes.byteOffset, 8).getBigUint64(0, true);
  if (rawLength > BigInt(MAX_HEADER_BYTES) || rawLength < 2n || 8 + Number(rawLength) > size) return parseSafetensorsHeader(lengthBytes, size, where);
  return parseSafetensorsHeader(await files.bytes(shard, 0, 8 + Number(rawLength)), size, where);
}

/**
 * Opens the checkpoint of a model directory through its files: headers are validated up front (duplicate tensors,
 * an index that lists a tensor elsewhere or not at all), data is read per tensor on demand. `shards` picks the
 * files (default: findShards).
 */
export async function openCheckpointFiles(files: ModelFiles, shards?: CheckpointShards): Promise<Checkpoint> {
  const { shards: names, index, weightMap } = shards ?? (await findShards(files));
  const headers = await Promise.all(names.map((shard) => readShardHeader(files, shard)));
  const byName = new Map<string, { info: TensorInfo; shard: string }>();
  for (const [i, header] of headers.entries()) {
    for (const info of header.tensors) {
      const seen = byName.get(info.name);
      if (seen) throw new SafetensorsFormatError(info.file, `tensor also stored in ${seen.info.file}; the checkpoint has duplicate tensors`, info.name);
      byName.set(info.name, { info, shard: names[i]! });
    }
  }
  if (weightMap && index) {
    for (const [name, shard] of Object.entries(weightMap)) {
      const entry = byName.get(name);
      if (!entry) throw new MissingTensorError(name, filePath(files, shard), `${index} lists it there; the shard is incomplete or the index is stale`);
      if (entry.shard !== shard) {
        throw new SafetensorsFormatError(filePath(files, index), `lists the tensor in ${shard} but it is stored in ${entry.shard}; the index is stale, download it again`, name);
      }
    }
    for (const [name, entry] of byName) {
      if (!Object.prototype.hasOwnProperty.call(weightMap, name)) {
        throw new SafetensorsFormatError(entry.info.file, `the tensor is stored here but ${index} does not list it; the index is stale, download it again`, name);
      }
    }
  }
  const entry = (name: string) => {
    const found = byName.get(name);
    if (!found) throw new MissingTensorError(name, files.name, 'check the tensor name (e.g. model.layers.0.self_attn.q_proj.weight)');
    return found;
  };
  const readRaw = async (name: string): Promise<Uint8Array> => {
    const { info, shard } = entry(name);
    const bytes = await files.bytes(shard, info.byteOffset, info.byteOffset + info.byteLength);
    if (bytes.byteLength < info.byteLength) throw new SafetensorsFormatError(info.file, 'file ended while reading the tensor; it is truncated', name);
    return bytes;
  };
  return {
    dir: files.name,
    files: Object.freeze(names.map((shard) => filePath(files, shard))),
    tensors: Object.freeze([...byName.values()].map((e) => e.info)),
    metadata: headers[0]?.metadata ?? {},
    has: (name) => byName.has(name),
    info: (name) => entry(name).info,
    readRaw,
    async read(name) {
      const { info } = entry(name);
      const raw = await readRaw(name);
      checkFinite(name, info.file, info.dtype, info.shape, raw);
      return { name, dtype: info.dtype, shape: info.shape, data: decodeToFloat32(raw, info.dtype) };
    },
    close: async () => files.close?.(),
  };
}

/** `config.json` of a model directory, parsed and checked (parseDecoderConfig). */
export async function readDecoderConfig(files: ModelFiles, path = 'config.json'): Promise<DecoderConfig> {
  const where = filePath(files, path);
  if (!files.has(path)) throw new MissingFileError(where, 'not found; a model directory needs the config.json of its Hugging Face checkpoint');
  let json: unknown;
  try {
    json = JSON.parse(await files.text(path));
  } catch (error) {
    throw new InvalidDataError(where, `is not valid JSON (${error instanceof Error ? error.message : String(error)})`);
  }
  return parseDecoderConfig(json, where);
}

/** A model directory whose config.json has been checked against its tensors. */
export interface OpenedModel {
  readonly config: DecoderConfig;
  /** Path of the config.json that was read. */
  readonly configFile: string;
  readonly layout: DecoderLayout;
  readonly checkpoint: Checkpoint;
}

/**
 * Opens a model for computing: config.json read, safetensors headers read, and the one validation (architecture,
 * layer count, every tensor present with the shape the config gives). Close the checkpoint when done.
 */
export async function openModelFiles(files: ModelFiles, shards?: CheckpointShards): Promise<OpenedModel> {
  const configFile = filePath(files, 'config.json');
  const config = await readDecoderConfig(files);
  const checkpoint = await openCheckpointFiles(files, shards);
  try {
    const layout = validateCheckpoint(config, checkpoint, configFile);
    return Object.freeze({ config, configFile, layout, checkpoint });
  } catch (error) {
    await checkpoint.close();
    throw error;
  }
}
