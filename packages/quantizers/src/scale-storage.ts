// How a quantized checkpoint stores each matrix's per-group scales and zeros: float32, float16, or 8-bit codes as the
// paper counts them (HQQ's quant_scale / quant_zero). Pure functions on typed arrays; the layout lives here and in
// checkpoint-format.ts, the I/O in quantize-model.ts and quantized-checkpoint.ts.
import { InvalidDataError, InvalidOptionError, SafetensorsFormatError } from '@layerquant/core';
import { f16BitsToFloat32, float32ToF16Bits } from '@layerquant/tensor-io/browser';
import { roundHalfEven } from './rounding.js';

/**
 * F32 (default), F16 (both rounded to half precision) or U8: the multiplier 1/s of each group quantized to 8 bits with
 * an fp16 (minimum, step) pair per block of SCALE_BLOCK_GROUPS consecutive groups, and the zeros quantized to 8 bits
 * with one fp16 pair per matrix. U8 is the paper's accounting `b + 16/g + 32/(128 g)` bits per weight (plus 4 bytes
 * per matrix for the zeros' pair).
 */
export type ScaleDtype = 'F32' | 'F16' | 'U8';
export const SCALE_DTYPES: readonly ScaleDtype[] = Object.freeze(['F32', 'F16', 'U8']);

/** Groups that share one fp16 (minimum, step) pair of the 8-bit scales (HQQ's scale_quant_params group_size). */
export const SCALE_BLOCK_GROUPS = 128;
/** Suffixes of the fp16 [blocks, 2] (minimum, step) tensors of an 8-bit scale and zero. */
export const SCALE_META_SUFFIX = '.scale_meta';
export const ZERO_META_SUFFIX = '.zero_meta';
const CODE_MAX = 255;
const HALF_MAX = 65504;

/** Stored tensors for the scales and zeros of `groups` groups, besides the codes: suffix, dtype, shape. */
export function scaleZeroTensorLayout(groups: number, scaleDtype: ScaleDtype): readonly { readonly suffix: string; readonly dtype: 'F32' | 'F16' | 'U8'; readonly shape: number[] }[] {
  if (scaleDtype !== 'U8') return [{ suffix: '.scale', dtype: scaleDtype, shape: [groups] }, { suffix: '.zero', dtype: scaleDtype, shape: [groups] }];
  return [
    { suffix: '.scale', dtype: 'U8', shape: [groups] },
    { suffix: SCALE_META_SUFFIX, dtype: 'F16', shape: [Math.ceil(groups / SCALE_BLOCK_GROUPS), 2] },
    { suffix: '.zero', dtype: 'U8', shape: [groups] },
    { suffix: ZERO_META_SUFFIX, dtype: 'F16', shape: [1, 2] },
  ];
}

/** Bytes the scales and zeros of `groups` groups take on disk. */
export function scaleZeroBytes(groups: number, scaleDtype: ScaleDtype): number {
  const bytes = { F32: 4, F16: 2, U8: 1 } as const;
  return scaleZeroTensorLayout(groups, scaleDtype).reduce((sum, t) => sum + t.shape.reduce((a, b) => a * b, 1) * bytes[t.dtype], 0);
}

/** Validates a scaleDtype option (the error names `option`). */
export function checkScaleDtype(scaleDtype: unknown, option = 'scaleDtype'): ScaleDtype {
  if (!SCALE_DTYPES.includes(scaleDtype as ScaleDtype)) throw new InvalidOptionError(option, `"${String(scaleDtype)}" must be one of ${SCALE_DTYPES.join(', ')}`);
  return scaleDtype as ScaleDtype;
}

function toHalf(value: number): number {
  return f16BitsToFloat32(float32ToF16Bits(Float32Array.of(value)))[0]!;
}

/**
 * 8-bit asymmetric quantization of values in blocks of `block` consecutive values (the last may be shorter): per block an
 * fp16 minimum m and step t = (max - min)/255 (both rounded to half precision first), codes round((v - m)/t) clamped to
 * [0, 255] (0 where t is 0). Read back as fround(m + code * t).
 */
export function quantizeU8Blocks(values: ArrayLike<number>, block: number, what: string): { codes: Uint8Array; meta: Float32Array } {
  const blocks = Math.ceil(values.length / block);
  const codes = new Uint8Array(values.length);
  const meta = new Float32Array(blocks * 2);
  for (let b = 0; b < blocks; b++) {
    const start = b * block;
    const end = Math.min(values.length, start + block);
    let min = Infinity;
    let max = -Infinity;
    for (let i = start; i < end; i++) {
      const v = values[i]!;
      if (!Number.isFinite(v)) throw new InvalidDataError(what, `value ${v} at ${i} cannot be stored as 8 bits; the weights hold a NaN or infinity`);
      if (v < min) min = v;
      if (v > max) max = v;
    }
    if (Math.abs(min) > HALF_MAX || Math.abs(max) > HALF_MAX) {
      throw new InvalidOptionError('scaleDtype', `U8 stores the range of ${what} in fp16, but it reaches ${Math.abs(min) > HALF_MAX ? min : max} (beyond +-65504); use F32`);
    }
    const m = toHalf(min);
    const t = toHalf((max - m) / CODE_MAX);
    meta[2 * b] = m;
    meta[2 * b + 1] = t;
    for (let i = start; i < end; i++) codes[i] = t > 0 ? Math.min(CODE_MAX, Math.max(0, roundHalfEven((values[i]! - m) / t))) : 0;
  }
  return { codes, meta };
}

/** The values an 8-bit block quantization stands for: fround(m + code * t), computed in float64 and rounded once. */
export function dequantizeU8Blocks(codes: Uint8Array, meta: Float32Array, block: number): Float32Array {
  const out = new Float32Array(codes.length);
  for (let i = 0; i < codes.length; i++) {
    const b = Math.floor(i / block);
    out[i] = meta[2 * b]! + codes[i]! * meta[2 * b + 1]!;
  }
  return out;
}

/** Scales and zeros in their stored form: the tensors to write (by suffix) and the float32 values they read back as. */
export interface StoredScaleZero {
  readonly scale: Float32Array;
  readonly zero: Float32Array;
  readonly tensors: ReadonlyMap<string, Uint8Array>;
}

const bytesOf = (array: Float32Array | Uint16Array | Uint8Array) => new Uint8Array(array.buffer, array.byteOffset, array.byteLength);

/**
 * Encodes a matrix's solver scales s and zeros z (dequantization (code - z) / s) for storage. U8 quantizes the
 * multiplier 1/s (what HQQ quantizes, and what dequantization and MatMulNBits multiply by), so `scale` comes back as
 * fround(1 / d) of the 8-bit multiplier d.
 */
export function encodeScaleZero(name: string, scale: Float32Array, zero: Float32Array, scaleDtype: ScaleDtype): StoredScaleZero {
  if (scaleDtype === 'F32') return { scale, zero, tensors: new Map([['.scale', bytesOf(scale)], ['.zero', bytesOf(zero)]]) };
  if (scaleDtype === 'F16') {
    const [scaleBits, zeroBits] = [float32ToF16Bits(scale), float32ToF16Bits(zero)];
    return { scale: f16BitsToFloat32(scaleBits), zero: f16BitsToFloat32(zeroBits), tensors: new Map([['.scale', bytesOf(scaleBits)], ['.zero', bytesOf(zeroBits)]]) };
  }
  const multiplier = Float64Array.from(scale, (s) => 1 / s);
  const s8 = quantizeU8Blocks(multiplier, SCALE_BLOCK_GROUPS, `the scales of ${name}`);
  const z8 = quantizeU8Blocks(zero, zero.length, `the zeros of ${name}`);
  const tensors = new Map<string, Uint8Array>([
    ['.scale', s8.codes],
    [SCALE_META_SUFFIX, bytesOf(float32ToF16Bits(s8.meta))],
    ['.zero', z8.codes],
    [ZERO_META_SUFFIX, bytesOf(float32ToF16Bits(z8.meta))],
  ]);
  // The values the file will be read back as, by the reader's own function.
  return { ...decodeScaleZero(name, name, 'U8', (suffix) => tensors.get(suffix)!), tensors };
}

function typed<T extends Float32Array | Uint16Array>(bytes: Uint8Array, make: (buffer: ArrayBuffer, offset: number, length: number) => T, size: number): T {
  const copy = bytes.byteOffset % size === 0 ? bytes : bytes.slice();
  return make(copy.buffer as ArrayBuffer, copy.byteOffset, copy.byteLength / size);
}

/**
 * The float32 scales s and zeros z of a matrix from its stored tensors (`raw(suffix)`: the bytes of `<name><suffix>`).
 * A stored value that does not give a finite, positive scale is a SafetensorsFormatError naming `file` and the tensor.
 */
export function decodeScaleZero(file: string, name: string, scaleDtype: ScaleDtype, raw: (suffix: string) => Uint8Array): { scale: Float32Array; zero: Float32Array } {
  if (scaleDtype === 'F32') return { scale: typed(raw('.scale'), (b, o, l) => new Float32Array(b, o, l), 4), zero: typed(raw('.zero'), (b, o, l) => new Float32Array(b, o, l), 4) };
  if (scaleDtype === 'F16') return { scale: half(raw('.scale')), zero: half(raw('.zero')) };
  const multiplier = decodeU8Multipliers(file, name, raw('.scale'), raw(SCALE_META_SUFFIX));
  // s = fp32(1/d). Dequantization multiplies by fp32(1/s): d itself, or (about 1 group in 8, where no float32 s maps
  // back to d) d's float32 neighbour, 6e-8 relative; the ONNX export takes d exactly (readScaleMultipliers).
  const scale = new Float32Array(multiplier.length);
  for (let i = 0; i < multiplier.length; i++) scale[i] = 1 / multiplier[i]!;
  const zeroCodes = raw('.zero');
  return { scale, zero: dequantizeU8Blocks(zeroCodes, checkedRanges(file, name + ZERO_META_SUFFIX, raw(ZERO_META_SUFFIX)), Math.max(1, zeroCodes.length)) };
}

function half(bytes: Uint8Array): Float32Array {
  return f16BitsToFloat32(typed(bytes, (b, o, l) => new Uint16Array(b, o, l), 2));
}

/** fp16 (minimum, step) pairs, each finite with a step >= 0. */
function checkedRanges(file: string, tensor: string, bytes: Uint8Array): Float32Array {
  const meta = half(bytes);
  for (let i = 0; i < meta.length; i++) {
    if (!Number.isFinite(meta[i]!) || (i % 2 === 1 && meta[i]! < 0)) {
      throw new SafetensorsFormatError(file, `holds ${meta[i]} at ${i}; an 8-bit range needs a finite minimum and a step >= 0; the file is corrupt, quantize again`, tensor);
    }
  }
  return meta;
}

/** The multipliers 1/s an 8-bit scale tensor stands for (what dequantization and MatMulNBits multiply by), each positive. */
export function decodeU8Multipliers(file: string, name: string, codes: Uint8Array, metaBytes: Uint8Array): Float32Array {
  const multiplier = dequantizeU8Blocks(codes, checkedRanges(file, name + SCALE_META_SUFFIX, metaBytes), SCALE_BLOCK_GROUPS);
  for (let i = 0; i < multiplier.length; i++) {
    if (!(multiplier[i]! > 0)) throw new SafetensorsFormatError(file, `group ${i} stands for the multiplier ${multiplier[i]}; a scale must be positive; the file is corrupt, quantize again`, name + '.scale');
  }
  return multiplier;
}
