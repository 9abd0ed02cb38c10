import { InvalidDataError, InvalidOptionError } from '@layerquant/core';
import { bf16BitsToFloat32, float32ToBf16Bits, float32ToF16Bits } from '@layerquant/tensor-io';
import { ggmlType, ggufTensorBytes, type GgmlTypeName } from './ggml-types.js';
import { halfTable } from './half.js';
import { decodeKQuant, encodeKQuant, type KQuantType, type SubBlockSolver } from './k-quants.js';
import { LEGACY_LAYOUTS, decodeLegacy, encodeLegacyReference, encodeLegacyWeighted, type LegacyType } from './legacy-blocks.js';

// One encode / decode pair per ggml type layerquant writes, on row-major float32 values of a tensor in Hugging Face
// order (blocks run along the last dimension, the input channels of a matrix).

export interface GgmlEncodeOptions {
  /**
   * Importance of each input channel (one per column; llama.cpp's imatrix: the mean squared activation of that
   * channel over calibration text). The k-quant encoders always weigh by it (uniform when absent); the legacy types
   * use llama.cpp's reference rules without it and a weighted search with it. F32/F16/BF16 ignore it.
   */
  readonly importance?: Float32Array;
  /** `reference`: the legacy types ignore `importance` and follow llama.cpp's reference encoder byte for byte. */
  readonly legacy?: 'reference' | 'weighted';
  /** The k-quants' choice of each sub-block's scale and min (default least-squares; `hqq`: HQQ's solver, k-quants.ts). */
  readonly solver?: SubBlockSolver;
  /** Names the tensor in errors. */
  readonly tensor?: string;
}

function checkValues(values: Float32Array, tensor: string): void {
  for (let i = 0; i < values.length; i++) {
    if (!Number.isFinite(values[i]!)) throw new InvalidDataError(`tensor "${tensor}"`, `value ${values[i]} at flat index ${i} cannot be quantized; the weights must be finite`);
  }
}

function checkImportance(importance: Float32Array, rowLength: number, tensor: string): void {
  if (importance.length !== rowLength) {
    throw new InvalidOptionError('importance', `tensor "${tensor}" has rows of ${rowLength} input channels but its importance vector has ${importance.length} values`);
  }
  for (let i = 0; i < importance.length; i++) {
    const v = importance[i]!;
    if (!Number.isFinite(v) || v < 0) throw new InvalidOptionError('importance', `tensor "${tensor}": input channel ${i} has importance ${v}; importances are finite and >= 0 (mean squared activations)`);
  }
}

/** Importances with a floor of 1e-6 of their mean, so a dead channel still has a defined rounding. */
function floored(importance: Float32Array): Float32Array {
  let mean = 0;
  for (const v of importance) mean += v;
  mean /= importance.length || 1;
  const floor = mean > 0 ? mean * 1e-6 : 1;
  return Float32Array.from(importance, (v) => v + floor);
}

/**
 * Encodes a tensor of `shape` (Hugging Face order) as `type`: exactly ggufTensorBytes(type, shape) bytes, in the
 * block layout llama.cpp reads. Non-finite values are an InvalidDataError naming the tensor.
 */
export function encodeGgml(type: GgmlTypeName, values: Float32Array, shape: readonly number[], options: GgmlEncodeOptions = {}): Uint8Array {
  const tensor = options.tensor ?? 'tensor';
  const info = ggmlType(type);
  const expected = ggufTensorBytes(info, shape, tensor);
  const elements = shape.reduce((a, b) => a * b, 1);
  if (values.length !== elements) throw new InvalidDataError(`tensor "${tensor}"`, `has ${values.length} values but shape [${shape.join(', ')}] holds ${elements}`);
  const rowLength = shape.length === 0 ? 1 : shape[shape.length - 1]!;
  if (options.importance) checkImportance(options.importance, rowLength, tensor);
  let bytes: Uint8Array;
  if (type === 'F32') {
    bytes = new Uint8Array(values.buffer.slice(values.byteOffset, values.byteOffset + values.byteLength));
  } else if (type === 'F16') {
    const bits = float32ToF16Bits(values);
    for (let i = 0; i < bits.length; i++) {
      if ((bits[i]! & 0x7c00) === 0x7c00 && Number.isFinite(values[i]!)) {
        throw new InvalidDataError(`tensor "${tensor}"`, `value ${values[i]} at flat index ${i} is beyond F16's range (65504); store the tensor as BF16 or F32`);
      }
    }
    bytes = new Uint8Array(bits.buffer);
  } else if (type === 'BF16') {
    bytes = new Uint8Array(float32ToBf16Bits(values).buffer);
  } else {
    checkValues(values, tensor);
    const importance = options.importance ? floored(options.importance) : undefined;
    if (type in LEGACY_LAYOUTS) {
      const weighted = importance !== undefined && options.legacy !== 'reference';
      bytes = weighted ? encodeLegacyWeighted(type as LegacyType, values, rowLength, importance) : encodeLegacyReference(type as LegacyType, values);
    } else {
      bytes = encodeKQuant(type as KQuantType, values, rowLength, importance, options.solver);
    }
  }
  if (bytes.length !== expected) throw new Error(`${type} encoder wrote ${bytes.length} bytes for tensor "${tensor}", expected ${expected}`);
  return bytes;
}

/** Decodes a tensor's bytes (exactly ggufTensorBytes(type, shape) of them) to float32 values, row-major. */
export function decodeGgml(type: GgmlTypeName, bytes: Uint8Array, shape: readonly number[], tensor = 'tensor'): Float32Array {
  const expected = ggufTensorBytes(type, shape, tensor);
  if (bytes.length !== expected) throw new InvalidDataError(`tensor "${tensor}"`, `${type} [${shape.join(', ')}] needs ${expected} bytes, got ${bytes.length}`);
  const elements = shape.reduce((a, b) => a * b, 1);
  const aligned = bytes.byteOffset % 4 === 0 ? bytes : bytes.slice();
  switch (type) {
    case 'F32':
      return new Float32Array(aligned.buffer.slice(aligned.byteOffset, aligned.byteOffset + aligned.byteLength));
    case 'F16': {
      const table = halfTable();
      const bits = new Uint16Array(aligned.buffer, aligned.byteOffset, elements);
      const out = new Float32Array(elements);
      for (let i = 0; i < elements; i++) out[i] = table[bits[i]!]!;
      return out;
    }
    case 'BF16':
      return bf16BitsToFloat32(new Uint16Array(aligned.buffer, aligned.byteOffset, elements));
    default:
      return type in LEGACY_LAYOUTS ? decodeLegacy(type as LegacyType, bytes, elements) : decodeKQuant(type as KQuantType, bytes, elements);
  }
}
