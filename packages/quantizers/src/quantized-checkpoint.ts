import {
  InvalidDataError,
  MissingTensorError,
  SafetensorsFormatError,
  configName,
  quantConfig,
  type DType,
  type MatrixKey,
  type QuantConfig,
  type QuantizedTensor,
  type WeightTensor,
} from '@layerquant/core';
import { openCheckpoint, type Checkpoint, type TensorInfo, type WeightSource } from '@layerquant/tensor-io';
import { PACKING, wordsPerRow } from './bit-packing.js';
import { dequantizeTensor } from './quantizers.js';

/** Value of `__metadata__["layerquant.format"]` in a quantized checkpoint. */
export const QUANTIZED_FORMAT = 'layerquant-quantized-v1';

/** Suffixes of the three stored tensors of a quantized matrix `<name>`. */
export const QWEIGHT_SUFFIX = '.qweight';
export const SCALE_SUFFIX = '.scale';
export const ZERO_SUFFIX = '.zero';

/** Per quantized tensor, in `__metadata__["layerquant.tensors"]`. */
export interface QuantizedTensorMetadata {
  readonly shape: readonly [number, number];
  readonly bits: number;
  readonly groupSize: number;
  readonly axis: 0 | 1;
  readonly roundZero: boolean;
  /** dtype of the original weight. */
  readonly dtype: DType;
}

/** What `__metadata__` of a quantized checkpoint holds (all values JSON strings, as safetensors requires). */
export interface QuantizedCheckpointMetadata {
  readonly method: string;
  /** Matrix key -> config name, or null for a matrix left in float. */
  readonly allocation: Readonly<Record<MatrixKey, string | null>>;
  readonly tensors: Readonly<Record<string, QuantizedTensorMetadata>>;
  /** Free-form settings of the method (solver options, allocator options). */
  readonly options: Readonly<Record<string, unknown>>;
}

/** The `__metadata__` strings of a quantized checkpoint. */
export function encodeQuantizedMetadata(metadata: QuantizedCheckpointMetadata): Record<string, string> {
  return {
    format: 'pt',
    'layerquant.format': QUANTIZED_FORMAT,
    'layerquant.method': metadata.method,
    'layerquant.packing': PACKING,
    'layerquant.allocation': JSON.stringify(metadata.allocation),
    'layerquant.tensors': JSON.stringify(metadata.tensors),
    'layerquant.options': JSON.stringify(metadata.options),
  };
}

/** Whether a safetensors `__metadata__` is a layerquant quantized checkpoint's. */
export function isQuantizedMetadata(metadata: Readonly<Record<string, string>>): boolean {
  return metadata['layerquant.format'] !== undefined;
}

function parseJsonField(file: string, metadata: Readonly<Record<string, string>>, key: string): unknown {
  const text = metadata[key];
  if (text === undefined) throw new SafetensorsFormatError(file, `__metadata__ has no "${key}"; the quantized checkpoint is incomplete, quantize again`);
  try {
    return JSON.parse(text);
  } catch (error) {
    throw new SafetensorsFormatError(file, `__metadata__ "${key}" is not valid JSON; the file is corrupt, quantize again`, undefined, { cause: error });
  }
}

/** Parses and validates the `__metadata__` of a quantized checkpoint. */
export function decodeQuantizedMetadata(file: string, metadata: Readonly<Record<string, string>>): QuantizedCheckpointMetadata {
  const format = metadata['layerquant.format'];
  if (format !== QUANTIZED_FORMAT) {
    throw new SafetensorsFormatError(file, `is not a layerquant quantized checkpoint (layerquant.format is ${format === undefined ? 'missing' : `"${format}"`}, expected "${QUANTIZED_FORMAT}"); quantize the model with \`layerquant quantize\``);
  }
  if (metadata['layerquant.packing'] !== PACKING) {
    throw new SafetensorsFormatError(file, `packing "${metadata['layerquant.packing']}" is not supported (expected "${PACKING}")`);
  }
  const tensors = parseJsonField(file, metadata, 'layerquant.tensors') as Record<string, QuantizedTensorMetadata>;
  const allocation = parseJsonField(file, metadata, 'layerquant.allocation') as Record<string, string | null>;
  const options = (metadata['layerquant.options'] ? parseJsonField(file, metadata, 'layerquant.options') : {}) as Record<string, unknown>;
  if (typeof tensors !== 'object' || tensors === null || typeof allocation !== 'object' || allocation === null) {
    throw new SafetensorsFormatError(file, '__metadata__ "layerquant.tensors" and "layerquant.allocation" must be JSON objects');
  }
  return Object.freeze({ method: metadata['layerquant.method'] ?? 'unknown', allocation, tensors, options });
}

/** The config of a quantized tensor's metadata, validated by core's factory. */
export function configOfMetadata(entry: QuantizedTensorMetadata): QuantConfig {
  return quantConfig(entry.bits, entry.groupSize, { axis: entry.axis, roundZero: entry.roundZero });
}

/** Metadata entry of a QuantizedTensor. */
export function metadataOfQuantized(quantized: QuantizedTensor, dtype: DType): QuantizedTensorMetadata {
  const { bits, groupSize, axis, roundZero } = quantized.config;
  return Object.freeze({ shape: quantized.shape, bits, groupSize, axis, roundZero, dtype });
}

/** The three stored tensors of a quantized matrix: their specs (name, dtype, shape) in file order. */
export function quantizedTensorSpecs(name: string, shape: readonly [number, number], config: QuantConfig) {
  const groups = (shape[0] * shape[1]) / config.groupSize;
  return [
    { name: name + QWEIGHT_SUFFIX, dtype: 'I32' as const, shape: [shape[0], wordsPerRow(shape[1], config.bits)] },
    { name: name + SCALE_SUFFIX, dtype: 'F32' as const, shape: [groups] },
    { name: name + ZERO_SUFFIX, dtype: 'F32' as const, shape: [groups] },
  ];
}

/**
 * A quantized checkpoint opened for reading. Same shape as tensor-io's Checkpoint (a WeightSource): `tensors` lists
 * the logical tensors (quantized matrices under their original names, as F32), `read(name)` returns dequantized
 * float32 weights for quantized matrices and the copied tensors otherwise.
 */
export interface QuantizedCheckpoint extends WeightSource {
  readonly dir: string;
  readonly files: readonly string[];
  readonly metadata: QuantizedCheckpointMetadata;
  /** Raw `__metadata__` strings. */
  readonly rawMetadata: Readonly<Record<string, string>>;
  isQuantized(name: string): boolean;
  info(name: string): TensorInfo;
  /** The stored codes, scales and zeros of a quantized matrix. */
  readQuantized(name: string): Promise<QuantizedTensor>;
  close(): Promise<void>;
}

function asInt32Words(bytes: Uint8Array): Uint32Array {
  const copy = bytes.byteOffset % 4 === 0 ? bytes : bytes.slice();
  return new Uint32Array(copy.buffer, copy.byteOffset, copy.byteLength / 4);
}

function asFloat32(bytes: Uint8Array): Float32Array {
  const copy = bytes.byteOffset % 4 === 0 ? bytes : bytes.slice();
  return new Float32Array(copy.buffer, copy.byteOffset, copy.byteLength / 4);
}

/** Opens a directory (or .safetensors file) written by quantizeModel. */
export async function openQuantizedCheckpoint(path: string): Promise<QuantizedCheckpoint> {
  const checkpoint = await openCheckpoint(path);
  try {
    return wrapQuantizedCheckpoint(checkpoint);
  } catch (error) {
    await checkpoint.close();
    throw error;
  }
}

/**
 * Opens any model directory for reading float32 weights: a quantized checkpoint (dequantized on read) or a plain
 * Hugging Face checkpoint. The runtime can take either.
 */
export async function openModelWeights(path: string): Promise<Checkpoint | QuantizedCheckpoint> {
  const checkpoint = await openCheckpoint(path);
  if (!isQuantizedMetadata(checkpoint.metadata)) return checkpoint;
  try {
    return wrapQuantizedCheckpoint(checkpoint);
  } catch (error) {
    await checkpoint.close();
    throw error;
  }
}

function wrapQuantizedCheckpoint(checkpoint: Checkpoint): QuantizedCheckpoint {
  const file = checkpoint.files[0] ?? checkpoint.dir;
  const metadata = decodeQuantizedMetadata(file, checkpoint.metadata);
  const quantized = new Map<string, { entry: QuantizedTensorMetadata; config: QuantConfig }>();
  for (const [name, entry] of Object.entries(metadata.tensors)) {
    let config: QuantConfig;
    try {
      config = configOfMetadata(entry);
    } catch (error) {
      throw new SafetensorsFormatError(file, `metadata of the quantized tensor is invalid: ${(error as Error).message}`, name, { cause: error });
    }
    for (const spec of quantizedTensorSpecs(name, entry.shape, config)) {
      if (!checkpoint.has(spec.name)) throw new MissingTensorError(spec.name, file, `the metadata lists "${name}" as quantized; the file is incomplete, quantize again`);
      const info = checkpoint.info(spec.name);
      if (info.dtype !== spec.dtype || info.shape.join(',') !== spec.shape.join(',')) {
        throw new SafetensorsFormatError(file, `is ${info.dtype} [${info.shape.join(', ')}] but a ${configName(config)} matrix of shape [${entry.shape.join(', ')}] stores ${spec.dtype} [${spec.shape.join(', ')}]`, spec.name);
      }
    }
    quantized.set(name, { entry, config });
  }
  const stored = new Set<string>();
  for (const name of quantized.keys()) for (const suffix of [QWEIGHT_SUFFIX, SCALE_SUFFIX, ZERO_SUFFIX]) stored.add(name + suffix);
  const logical = new Map<string, TensorInfo>();
  for (const info of checkpoint.tensors) {
    if (stored.has(info.name)) continue;
    logical.set(info.name, info);
  }
  for (const [name, { entry, config }] of quantized) {
    const parts = quantizedTensorSpecs(name, entry.shape, config).map((spec) => checkpoint.info(spec.name));
    logical.set(name, Object.freeze({
      name,
      dtype: 'F32' as const,
      shape: entry.shape,
      file: parts[0]!.file,
      byteOffset: parts[0]!.byteOffset,
      byteLength: parts.reduce((sum, part) => sum + part.byteLength, 0),
    }));
  }
  const readQuantized = async (name: string): Promise<QuantizedTensor> => {
    const found = quantized.get(name);
    if (!found) throw new MissingTensorError(name, `the quantized tensors of ${checkpoint.dir}`, 'it is stored in float; read it with read()');
    const [packed, scale, zero] = await Promise.all([
      checkpoint.readRaw(name + QWEIGHT_SUFFIX),
      checkpoint.readRaw(name + SCALE_SUFFIX),
      checkpoint.readRaw(name + ZERO_SUFFIX),
    ]);
    return Object.freeze({
      name,
      shape: found.entry.shape,
      config: found.config,
      method: metadata.method,
      packed: asInt32Words(packed),
      packing: PACKING,
      scale: asFloat32(scale),
      zero: asFloat32(zero),
    });
  };
  const tensors = Object.freeze([...logical.values()]);
  return {
    dir: checkpoint.dir,
    files: checkpoint.files,
    metadata,
    rawMetadata: checkpoint.metadata,
    tensors,
    has: (name) => logical.has(name),
    isQuantized: (name) => quantized.has(name),
    info(name) {
      const info = logical.get(name);
      if (!info) throw new MissingTensorError(name, checkpoint.dir, 'check the tensor name (e.g. model.layers.0.self_attn.q_proj.weight)');
      return info;
    },
    readQuantized,
    async read(name): Promise<WeightTensor> {
      if (!quantized.has(name)) {
        if (!logical.has(name)) throw new MissingTensorError(name, checkpoint.dir, 'check the tensor name');
        return checkpoint.read(name);
      }
      const q = await readQuantized(name);
      let data: Float32Array;
      try {
        data = dequantizeTensor(q);
      } catch (error) {
        if (error instanceof InvalidDataError) throw new SafetensorsFormatError(file, error.message, name, { cause: error });
        throw error;
      }
      return { name, dtype: 'F32', shape: q.shape, data };
    },
    close: () => checkpoint.close(),
  };
}
