import { MissingFileError, MissingTensorError, SafetensorsFormatError, type WeightTensor } from '@layerquant/core';
import { existsSync } from 'node:fs';
import { open, readFile, readdir, type FileHandle } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import { decodeToFloat32 } from './dtype.js';
import { checkFinite } from './finite.js';
import { checkInputFile, inputPathKind, pathEntryExists } from './input-file.js';
import { checkOneWeightSet } from './model-files.js';
import { readSafetensorsHeader, type TensorInfo } from './safetensors.js';

/** Anything that hands out float32 weights by tensor name: a checkpoint, a quantized checkpoint, a test double. */
export interface WeightSource {
  readonly tensors: readonly TensorInfo[];
  has(name: string): boolean;
  read(name: string): Promise<WeightTensor>;
}

/** A model on disk; tensors are read lazily, one at a time, so a large model never sits in memory twice. */
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

const INDEX_NAME = 'model.safetensors.index.json';

async function resolveFiles(path: string): Promise<{ dir: string; files: string[]; index?: string; weightMap?: Record<string, string> }> {
  const absolute = resolve(path);
  if (inputPathKind(absolute, 'a model directory or a .safetensors file') === 'file') {
    if (absolute.endsWith('.index.json')) return resolveIndex(dirname(absolute), absolute);
    return { dir: dirname(absolute), files: [absolute] };
  }
  const index = join(absolute, INDEX_NAME);
  if (existsSync(index)) {
    const resolved = await resolveIndex(absolute, index);
    checkOneWeightSet(absolute, resolved.files.map((f) => basename(f)));
    return resolved;
  }
  const single = join(absolute, 'model.safetensors');
  checkOneWeightSet(absolute);
  if (existsSync(single) || pathEntryExists(single)) return { dir: absolute, files: [single] };
  const found = (await readdir(absolute)).filter((f) => f.endsWith('.safetensors')).sort();
  if (found.length === 0) {
    throw new MissingFileError(absolute, `has no model.safetensors, no ${INDEX_NAME} and no *.safetensors file; point to a Hugging Face model directory`);
  }
  return { dir: absolute, files: found.map((f) => join(absolute, f)) };
}

async function resolveIndex(dir: string, index: string): Promise<{ dir: string; files: string[]; index: string; weightMap: Record<string, string> }> {
  checkInputFile(index, 'the shard index of the model (model.safetensors.index.json)');
  let json: { weight_map?: Record<string, string> };
  try {
    json = JSON.parse(await readFile(index, 'utf8')) as { weight_map?: Record<string, string> };
  } catch (error) {
    throw new SafetensorsFormatError(index, 'is not valid JSON; the index is corrupt, download it again', undefined, { cause: error });
  }
  if (!json.weight_map || typeof json.weight_map !== 'object') {
    throw new SafetensorsFormatError(index, 'has no "weight_map" object mapping tensor names to shard files');
  }
  const files: string[] = [];
  for (const [tensor, shard] of Object.entries(json.weight_map)) {
    if (typeof shard !== 'string' || !shard.endsWith('.safetensors') || basename(shard) !== shard) {
      throw new SafetensorsFormatError(index, `weight_map maps the tensor to ${JSON.stringify(shard)}, not to a .safetensors file beside the index; the index is corrupt`, tensor);
    }
    const file = join(dir, shard);
    if (!files.includes(file)) {
      if (!existsSync(file) && !pathEntryExists(file)) {
        throw new MissingFileError(file, `shard named by ${basename(index)} for tensor "${tensor}" is missing; download every shard of the model`);
      }
      files.push(file);
    }
  }
  return { dir, files, index, weightMap: json.weight_map };
}

/**
 * Opens a checkpoint: a directory with `model.safetensors`, a sharded directory with
 * `model.safetensors.index.json`, or a single `.safetensors` file. Headers are validated up front; data is not read.
 */
export async function openCheckpoint(path: string): Promise<Checkpoint> {
  const { dir, files, index, weightMap } = await resolveFiles(path);
  const headers = await Promise.all(files.map((f) => readSafetensorsHeader(f)));
  const byName = new Map<string, TensorInfo>();
  for (const header of headers) {
    for (const info of header.tensors) {
      if (byName.has(info.name)) {
        throw new SafetensorsFormatError(info.file, `tensor also stored in ${byName.get(info.name)!.file}; the checkpoint has duplicate tensors`, info.name);
      }
      byName.set(info.name, info);
    }
  }
  if (weightMap && index) {
    for (const [name, shard] of Object.entries(weightMap)) {
      const info = byName.get(name);
      if (!info) throw new MissingTensorError(name, join(dir, shard), `${basename(index)} lists it there; the shard is incomplete or the index is stale`);
      if (info.file !== join(dir, shard)) {
        throw new SafetensorsFormatError(index, `lists the tensor in ${shard} but it is stored in ${basename(info.file)}; the index is stale, download it again`, name);
      }
    }
    for (const name of byName.keys()) {
      if (!Object.prototype.hasOwnProperty.call(weightMap, name)) {
        throw new SafetensorsFormatError(byName.get(name)!.file, `the tensor is stored here but ${basename(index)} does not list it; the index is stale, download it again`, name);
      }
    }
  }
  const handles = new Map<string, Promise<FileHandle>>();
  const handleFor = (file: string) => {
    let handle = handles.get(file);
    if (!handle) {
      handle = open(file, 'r');
      handles.set(file, handle);
    }
    return handle;
  };
  const info = (name: string): TensorInfo => {
    const found = byName.get(name);
    if (!found) throw new MissingTensorError(name, dir, 'check the tensor name (e.g. model.layers.0.self_attn.q_proj.weight)');
    return found;
  };
  const readRaw = async (name: string): Promise<Uint8Array> => {
    const t = info(name);
    const bytes = new Uint8Array(t.byteLength);
    const handle = await handleFor(t.file);
    let done = 0;
    while (done < t.byteLength) {
      const { bytesRead } = await handle.read(bytes, done, t.byteLength - done, t.byteOffset + done);
      if (bytesRead === 0) throw new SafetensorsFormatError(t.file, 'file ended while reading the tensor; it is truncated', name);
      done += bytesRead;
    }
    return bytes;
  };
  const tensors = Object.freeze([...byName.values()]);
  return {
    dir,
    files: Object.freeze(files),
    tensors,
    metadata: headers[0]?.metadata ?? {},
    has: (name) => byName.has(name),
    info,
    readRaw,
    async read(name) {
      const t = info(name);
      const raw = await readRaw(name);
      checkFinite(name, t.file, t.dtype, t.shape, raw);
      const data = decodeToFloat32(raw, t.dtype);
      return { name, dtype: t.dtype, shape: t.shape, data };
    },
    async close() {
      const all = [...handles.values()];
      handles.clear();
      await Promise.all(all.map(async (h) => (await h).close()));
    },
  };
}
