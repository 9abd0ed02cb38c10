// The quantized checkpoint format (layerquant-quantized-v1): names, metadata and tensor layout. Pure data, no I/O.
import { SafetensorsFormatError, quantConfig, type DType, type MatrixKey, type QuantConfig, type QuantizedTensor } from '@layerquant/core';
import { PACKING, wordsPerRow } from './bit-packing.js';
import { scaleZeroTensorLayout, type ScaleDtype } from './scale-storage.js';

/** Value of `__metadata__["layerquant.format"]` in a quantized checkpoint. */
export const QUANTIZED_FORMAT = 'layerquant-quantized-v1';

/** Suffixes of the three stored tensors of a quantized matrix `<name>`. */
export const QWEIGHT_SUFFIX = '.qweight';
export const SCALE_SUFFIX = '.scale';
export const ZERO_SUFFIX = '.zero';
/** The per-column code widths of a quantizer that gives columns different widths (U8 [columns]). */
export const COLUMN_BITS_SUFFIX = '.column_bits';

/** Per quantized tensor, in `__metadata__["layerquant.tensors"]`. */
export interface QuantizedTensorMetadata {
  readonly shape: readonly [number, number];
  readonly bits: number;
  readonly groupSize: number;
  readonly axis: 0 | 1;
  readonly roundZero: boolean;
  /** No zero point (codes centred on 2^(bits-1)); absent in files written before symmetric configs: false. */
  readonly symmetric?: boolean;
  /** dtype of the original weight. */
  readonly dtype: DType;
  /** Storage of the scale and zero tensors: F32 (absent in files written before the option), F16 or U8 (scale-storage.ts). */
  readonly scaleDtype?: ScaleDtype;
  /** The matrix stores a code width per input column (`<name>.column_bits`, U8 [columns]); absent: every column has `bits`. */
  readonly columnBits?: true;
}

export { SCALE_DTYPES, type ScaleDtype } from './scale-storage.js';

/** What `__metadata__` of a quantized checkpoint holds (all values JSON strings, as safetensors requires). */
export interface QuantizedCheckpointMetadata {
  readonly method: string;
  /**
   * Id of the quantizer plug-in that wrote the codes; the reader dequantizes with that plug-in. Checkpoints from
   * before the field have it from `options.quantizer`, else `hqq` (rtn and hqq dequantize alike).
   */
  readonly quantizer: string;
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
    'layerquant.quantizer': metadata.quantizer,
    'layerquant.packing': PACKING,
    'layerquant.allocation': JSON.stringify(metadata.allocation),
    'layerquant.tensors': JSON.stringify(metadata.tensors),
    'layerquant.options': JSON.stringify(metadata.options),
  };
}

/** What a checkpoint without a recorded quantizer was written by: rtn or hqq, whose dequantization is the same. */
export const LEGACY_QUANTIZER = 'hqq';

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
  const recorded = metadata['layerquant.quantizer'] ?? (typeof options.quantizer === 'string' ? options.quantizer : undefined);
  const quantizer = recorded ?? LEGACY_QUANTIZER;
  return Object.freeze({ method: metadata['layerquant.method'] ?? 'unknown', quantizer, allocation, tensors, options });
}

/** The config of a quantized tensor's metadata, validated by core's factory. */
export function configOfMetadata(entry: QuantizedTensorMetadata): QuantConfig {
  return quantConfig(entry.bits, entry.groupSize, { axis: entry.axis, roundZero: entry.roundZero, symmetric: entry.symmetric === true });
}

/** Metadata entry of a QuantizedTensor. */
export function metadataOfQuantized(quantized: QuantizedTensor, dtype: DType): QuantizedTensorMetadata {
  const { bits, groupSize, axis, roundZero, symmetric } = quantized.config;
  return Object.freeze({ shape: quantized.shape, bits, groupSize, axis, roundZero, ...(symmetric ? { symmetric } : {}), dtype, ...(quantized.columnBits ? { columnBits: true as const } : {}) });
}

/**
 * The stored tensors of a quantized matrix (codes, scales, zeros; U8 adds their fp16 ranges; `columnBits` the width of
 * each column): specs in file order.
 */
export function quantizedTensorSpecs(name: string, shape: readonly [number, number], config: QuantConfig, scaleDtype: ScaleDtype = 'F32', columnBits = false) {
  const groups = (shape[0] * shape[1]) / config.groupSize;
  return [
    { name: name + QWEIGHT_SUFFIX, dtype: 'I32' as const, shape: [shape[0], wordsPerRow(shape[1], config.bits)] },
    ...scaleZeroTensorLayout(groups, scaleDtype).map((t) => ({ name: name + t.suffix, dtype: t.dtype, shape: t.shape })),
    ...(columnBits ? [{ name: name + COLUMN_BITS_SUFFIX, dtype: 'U8' as const, shape: [shape[1]] }] : []),
  ];
}

