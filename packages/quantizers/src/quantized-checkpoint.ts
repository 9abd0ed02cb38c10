import {
  InvalidDataError,
  LayerquantError,
  MissingTensorError,
  SafetensorsFormatError,
  bitsPerWeight,
  configName,
  matrixOfTensorName,
  type QuantConfig,
  type QuantizedTensor,
  type Quantizer,
  type WeightTensor,
} from '@layerquant/core';
import { checkFinite, openCheckpoint, type Checkpoint, type TensorInfo, type WeightSource } from '@layerquant/tensor-io';
import { PACKING } from './bit-packing.js';
import {
  COLUMN_BITS_SUFFIX,
  QWEIGHT_SUFFIX,
  SCALE_SUFFIX,
  ZERO_SUFFIX,
  configOfMetadata,
  decodeQuantizedMetadata,
  isQuantizedMetadata,
  SCALE_DTYPES,
  quantizedTensorSpecs,
  type QuantizedCheckpointMetadata,
  type QuantizedTensorMetadata,
} from './checkpoint-format.js';
import { SCALE_META_SUFFIX, decodeScaleZero, decodeU8Multipliers } from './scale-storage.js';
import { QUANTIZER_PLUGINS } from './registry.js';

/** Where a reader finds the quantizer a checkpoint names (a registry, or a plain list). */
export interface QuantizerLookup {
  readonly quantizers?: { has(id: string): boolean; get(id: string): Quantizer; ids(): string[] } | readonly Quantizer[];
}

/** A checkpoint written by a quantizer this process does not know. */
export class UnknownQuantizerError extends LayerquantError {
  constructor(readonly file: string, readonly quantizer: string, available: readonly string[]) {
    super(
      'UNKNOWN_QUANTIZER',
      `${file} was quantized by "${quantizer}", which is not registered (available: ${available.join(', ')}); load its plug-in with --plugin <module>`,
    );
  }
}

function findQuantizer(file: string, id: string, lookup: QuantizerLookup['quantizers']): Quantizer {
  const source = lookup ?? QUANTIZER_PLUGINS;
  if (Array.isArray(source)) {
    const list = source as readonly Quantizer[];
    const found = list.find((q) => q.id === id);
    if (!found) throw new UnknownQuantizerError(file, id, list.map((q) => q.id));
    return found;
  }
  const registry = source as Exclude<QuantizerLookup['quantizers'], readonly Quantizer[] | undefined>;
  if (!registry.has(id)) throw new UnknownQuantizerError(file, id, registry.ids());
  return registry.get(id);
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
  /** The quantizer the checkpoint records (`metadata.quantizer`), from the lookup it was opened with. */
  quantizer(): Quantizer;
  /** The multipliers 1/s as stored where the checkpoint quantizes them (scaleDtype U8), exactly; otherwise undefined. */
  readScaleMultipliers(name: string): Promise<Float32Array | undefined>;
  close(): Promise<void>;
}

/**
 * A quantized matrix's scales and zeros are checked like weights: a NaN or infinity (or a zero scale, which dequantizes
 * to infinity) would reach the packed graph, the export and every perplexity as a non-number or a silently wrong one.
 */
function checkScaleZero(file: string, name: string, scale: Float32Array, zero: Float32Array): void {
  const groups = [scale.length];
  checkFinite(name + SCALE_SUFFIX, file, 'F32', groups, new Uint8Array(scale.buffer, scale.byteOffset, scale.byteLength));
  checkFinite(name + ZERO_SUFFIX, file, 'F32', groups, new Uint8Array(zero.buffer, zero.byteOffset, zero.byteLength));
  const index = scale.indexOf(0);
  if (index >= 0) {
    throw new SafetensorsFormatError(file, `scale 0 at group ${index}: (code - zero) / scale would be infinite; the checkpoint is corrupt, quantize again`, name + SCALE_SUFFIX);
  }
}

function asInt32Words(bytes: Uint8Array): Uint32Array {
  const copy = bytes.byteOffset % 4 === 0 ? bytes : bytes.slice();
  return new Uint32Array(copy.buffer, copy.byteOffset, copy.byteLength / 4);
}

/** Opens a directory (or .safetensors file) written by quantizeModel. */
export async function openQuantizedCheckpoint(path: string, lookup: QuantizerLookup = {}): Promise<QuantizedCheckpoint> {
  const checkpoint = await openCheckpoint(path);
  try {
    return wrapQuantizedCheckpoint(checkpoint, lookup);
  } catch (error) {
    await checkpoint.close();
    throw error;
  }
}

/**
 * Opens any model directory for reading float32 weights: a quantized checkpoint (dequantized on read) or a plain
 * Hugging Face checkpoint. The runtime can take either.
 */
export async function openModelWeights(path: string, lookup: QuantizerLookup = {}): Promise<Checkpoint | QuantizedCheckpoint> {
  const checkpoint = await openCheckpoint(path);
  if (!isQuantizedMetadata(checkpoint.metadata)) return checkpoint;
  try {
    return wrapQuantizedCheckpoint(checkpoint, lookup);
  } catch (error) {
    await checkpoint.close();
    throw error;
  }
}

function wrapQuantizedCheckpoint(checkpoint: Checkpoint, lookup: QuantizerLookup): QuantizedCheckpoint {
  const file = checkpoint.files[0] ?? checkpoint.dir;
  const metadata = decodeQuantizedMetadata(file, checkpoint.metadata);
  // The plug-in that wrote the codes dequantizes them; looked up on the first read, so inspecting a checkpoint of
  // an unloaded plug-in still works.
  let quantizer: Quantizer | undefined;
  const quantized = new Map<string, { entry: QuantizedTensorMetadata; config: QuantConfig }>();
  for (const [name, entry] of Object.entries(metadata.tensors)) {
    let config: QuantConfig;
    try {
      config = configOfMetadata(entry);
    } catch (error) {
      throw new SafetensorsFormatError(file, `metadata of the quantized tensor is invalid: ${(error as Error).message}`, name, { cause: error });
    }
    if (entry.scaleDtype !== undefined && !SCALE_DTYPES.includes(entry.scaleDtype)) {
      throw new SafetensorsFormatError(file, `scaleDtype "${String(entry.scaleDtype)}" is not one of ${SCALE_DTYPES.join(', ')}`, name);
    }
    for (const spec of quantizedTensorSpecs(name, entry.shape, config, entry.scaleDtype, entry.columnBits === true)) {
      if (!checkpoint.has(spec.name)) throw new MissingTensorError(spec.name, file, `the metadata lists "${name}" as quantized; the file is incomplete, quantize again`);
      const info = checkpoint.info(spec.name);
      if (info.dtype !== spec.dtype || info.shape.join(',') !== spec.shape.join(',')) {
        throw new SafetensorsFormatError(file, `is ${info.dtype} [${info.shape.join(', ')}] but a ${configName(config)} matrix of shape [${entry.shape.join(', ')}] stores ${spec.dtype} [${spec.shape.join(', ')}]`, spec.name);
      }
    }
    quantized.set(name, { entry, config });
  }
  const stored = new Set<string>();
  for (const [name, { entry, config }] of quantized) for (const spec of quantizedTensorSpecs(name, entry.shape, config, entry.scaleDtype, entry.columnBits === true)) stored.add(spec.name);
  const logical = new Map<string, TensorInfo>();
  for (const info of checkpoint.tensors) {
    if (stored.has(info.name)) continue;
    logical.set(info.name, info);
  }
  for (const [name, { entry, config }] of quantized) {
    const parts = quantizedTensorSpecs(name, entry.shape, config, entry.scaleDtype, entry.columnBits === true).map((spec) => checkpoint.info(spec.name));
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
    const specs = quantizedTensorSpecs(name, found.entry.shape, found.config, found.entry.scaleDtype, found.entry.columnBits === true);
    const raw = new Map(await Promise.all(specs.map(async (spec) => [spec.name.slice(name.length), await checkpoint.readRaw(spec.name)] as const)));
    const { scale, zero } = decodeScaleZero(file, name, found.entry.scaleDtype ?? 'F32', (suffix) => raw.get(suffix)!);
    checkScaleZero(checkpoint.info(name + SCALE_SUFFIX).file, name, scale, zero);
    return Object.freeze({
      name,
      shape: found.entry.shape,
      config: found.config,
      method: metadata.quantizer,
      packed: asInt32Words(raw.get(QWEIGHT_SUFFIX)!),
      packing: PACKING,
      scale,
      zero,
      ...(found.entry.columnBits ? { columnBits: raw.get(COLUMN_BITS_SUFFIX)!.slice() } : {}),
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
    quantizer: () => (quantizer ??= findQuantizer(file, metadata.quantizer, lookup.quantizers)),
    async readScaleMultipliers(name) {
      const found = quantized.get(name);
      if (found?.entry.scaleDtype !== 'U8') return undefined;
      const [codes, meta] = await Promise.all([checkpoint.readRaw(name + SCALE_SUFFIX), checkpoint.readRaw(name + SCALE_META_SUFFIX)]);
      return decodeU8Multipliers(file, name, codes, meta);
    },
    async read(name): Promise<WeightTensor> {
      if (!quantized.has(name)) {
        if (!logical.has(name)) throw new MissingTensorError(name, checkpoint.dir, 'check the tensor name');
        return checkpoint.read(name);
      }
      const q = await readQuantized(name);
      let data: Float32Array;
      try {
        quantizer ??= findQuantizer(file, metadata.quantizer, lookup.quantizers);
        data = quantizer.dequantize(q);
      } catch (error) {
        if (error instanceof InvalidDataError) throw new SafetensorsFormatError(file, error.message, name, { cause: error });
        throw error;
      }
      checkFinite(name, file, 'F32', q.shape, new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
      return { name, dtype: 'F32', shape: q.shape, data };
    },
    close: () => checkpoint.close(),
  };
}

/** The linear matrices of a quantized checkpoint as `layerquant inspect` reports them. */
export interface QuantizedCheckpointSummary {
  /** Every parameter of the model, quantized matrices counted at their original shapes. */
  readonly params: number;
  /** Weights of the linear matrices (quantized or kept in float), counted at their original shapes. */
  readonly linearParams: number;
  readonly linearMatrices: number;
  readonly quantizedMatrices: number;
  /** Matrices per config name (`b4g64`), `float` for those kept in float. */
  readonly configs: Readonly<Record<string, number>>;
  /** Bytes the linear matrices take in the file (packed codes, scales and zeros; float matrices as stored). */
  readonly linearBytes: number;
  /** Parameter-weighted bits per weight of the linear matrices in the paper's accounting (float matrices count 16). */
  readonly paperBitsPerWeight: number;
}

export function summarizeQuantizedCheckpoint(checkpoint: QuantizedCheckpoint): QuantizedCheckpointSummary {
  let params = 0;
  let linearParams = 0;
  let linearMatrices = 0;
  let quantizedMatrices = 0;
  let linearBytes = 0;
  let paperBits = 0;
  const configs: Record<string, number> = {};
  for (const info of checkpoint.tensors) {
    params += info.shape.reduce((a, b) => a * b, 1);
    if (!matrixOfTensorName(info.name)) continue;
    linearMatrices++;
    linearParams += info.shape.reduce((a, b) => a * b, 1);
    linearBytes += info.byteLength;
    const entry = checkpoint.metadata.tensors[info.name];
    const name = entry ? configName(configOfMetadata(entry)) : 'float';
    paperBits += (entry ? bitsPerWeight(configOfMetadata(entry)) : 16) * info.shape.reduce((a, b) => a * b, 1);
    if (entry) quantizedMatrices++;
    configs[name] = (configs[name] ?? 0) + 1;
  }
  return Object.freeze({ params, linearParams, linearMatrices, quantizedMatrices, configs: Object.freeze(configs), linearBytes, paperBitsPerWeight: linearParams > 0 ? paperBits / linearParams : 0 });
}
