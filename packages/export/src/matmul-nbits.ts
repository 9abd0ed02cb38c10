import { LayerquantError, configName, type QuantizedTensor } from '@layerquant/core';
import { PACKING, packCodes, roundHalfEven, unpackCodes } from '@layerquant/quantizers';
import type { MatMulNBitsWeight } from '@layerquant/runtime/graph';
import { matMulNBitsProblem, nativeBits, type NativeBits, type ScaleType } from './onnx-cost.js';
export { MATMUL_NBITS_BITS, type NativeBits, type ScaleType } from './onnx-cost.js';
import { float32ToF16Bits, f16BitsToFloat32 } from '@layerquant/tensor-io/browser';

/** A quantized matrix whose layout the export format cannot hold (strided groups, odd block sizes). */
export class UnsupportedExportError extends LayerquantError {
  constructor(readonly tensor: string, message: string) {
    super('UNSUPPORTED_EXPORT', `tensor "${tensor}": ${message}`);
  }
}

/** The narrowest native width that holds `bits`-bit codes unchanged (3 -> 4, 5 and 6 -> 8). */
export function storedBits(name: string, bits: number): NativeBits {
  const native = nativeBits(bits);
  if (native === undefined) throw new UnsupportedExportError(name, `${bits}-bit codes do not fit MatMulNBits (at most 8 bits)`);
  return native;
}

/** Packs row-major codes [rows, columns] into bytes, `8 / bits` per byte, least significant bits first, rows padded to whole bytes. */
export function packBytesLsb(codes: Uint8Array, rows: number, columns: number, bits: NativeBits): Uint8Array {
  const perByte = 8 / bits;
  const stride = Math.ceil(columns / perByte);
  const out = new Uint8Array(rows * stride);
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < columns; c++) out[r * stride + Math.floor(c / perByte)]! |= codes[r * columns + c]! << ((c % perByte) * bits);
  }
  return out;
}

export interface MatMulNBitsMatrix {
  readonly weight: MatMulNBitsWeight;
  /** The quantizer's bit width, and the width the codes are stored at (larger where MatMulNBits has no kernel). */
  readonly bits: number;
  readonly storedBits: NativeBits;
  /** Whether HQQ's fractional zero needed the per-group correction (false where every zero is an integer in range). */
  readonly zeroCorrection: boolean;
  /** Bytes in the file: codes, scales, zero points and correction. */
  readonly bytes: number;
}

/**
 * A layerquant quantized matrix as MatMulNBits inputs, exactly: codes repacked (identical bytes for 2/4/8 bits),
 * scale = fp32(1/s) per group (what dequantization multiplies by), zero point zp = clamp(round(z)) and, where z is
 * fractional, the correction (z - zp) * scale per group so that (code - zp) * scale - correction = (code - z) * scale.
 * With `scaleType: 'float16'` the scales are rounded to half precision and the correction (float32) uses the rounded scale.
 * `multipliers`: the stored 1/s where the checkpoint keeps them (8-bit scales, U8), used as they are instead of fp32(1/s).
 */
export function toMatMulNBits(q: QuantizedTensor, options: { readonly scaleType?: ScaleType; readonly multipliers?: Float32Array } = {}): MatMulNBitsMatrix {
  const { name, shape, config } = q;
  const [n, k] = shape;
  const block = config.groupSize;
  const problem = matMulNBitsProblem(k, config);
  if (problem) throw new UnsupportedExportError(name, `is quantized as ${configName(config)}: ${problem}`);
  if (q.packing !== PACKING) throw new UnsupportedExportError(name, `packing "${q.packing}" is not "${PACKING}"`);
  const bits = storedBits(name, config.bits);
  const blocks = k / block;
  const sameLayout = bits === config.bits && (k * bits) % 32 === 0;
  const codes = sameLayout
    ? new Uint8Array(q.packed.buffer, q.packed.byteOffset, q.packed.byteLength)
    : (() => {
        const repacked = packCodes(unpackCodes(q.packed, n, k, config.bits), n, k, bits);
        return new Uint8Array(repacked.buffer, repacked.byteOffset, (n * k * bits) / 8);
      })();
  if (codes.byteLength !== (n * k * bits) / 8) throw new UnsupportedExportError(name, `${codes.byteLength} bytes of codes for [${n}, ${k}] at ${bits} bits`);

  const groups = n * blocks;
  let scale32: Float32Array = new Float32Array(groups);
  if (options.multipliers && options.multipliers.length !== groups) throw new UnsupportedExportError(name, `${options.multipliers.length} scale multipliers for ${groups} groups`);
  for (let i = 0; i < groups; i++) scale32[i] = options.multipliers ? options.multipliers[i]! : Math.fround(1 / q.scale[i]!);
  let scales: Float32Array | Uint16Array = scale32;
  if (options.scaleType === 'float16') {
    scales = float32ToF16Bits(scale32);
    scale32 = f16BitsToFloat32(scales);
  }
  const maxCode = 2 ** bits - 1;
  const zp = new Uint8Array(groups);
  const correction32 = new Float32Array(groups);
  let fractional = false;
  for (let r = 0; r < n; r++) {
    for (let b = 0; b < blocks; b++) {
      const i = r * blocks + b;
      const z = q.zero[i]!;
      const point = Math.min(maxCode, Math.max(0, roundHalfEven(z)));
      zp[i] = point;
      if (z !== point) fractional = true;
      correction32[b * n + r] = (z - point) * scale32[i]!;
    }
  }
  // A symmetric config's zero is 2^(bits-1) everywhere (bits = the stored width only when no widening happened):
  // MatMulNBits' default, so no zero points are stored.
  const symmetric = config.symmetric && bits === config.bits && zp.every((p) => p === 2 ** (bits - 1)) && !fractional;
  const zeroPoints = symmetric ? undefined : packBytesLsb(zp, n, blocks, bits);
  // The correction is stored as the scales are (float16 halves it; its rounding is within the scale's own).
  const correction = !fractional ? undefined : options.scaleType === 'float16' ? float32ToF16Bits(correction32) : correction32;
  const weight: MatMulNBitsWeight = {
    format: 'matmul-nbits',
    bits,
    blockSize: block,
    shape,
    codes,
    scales,
    ...(zeroPoints ? { zeroPoints } : {}),
    ...(correction ? { correction } : {}),
  };
  const bytes = codes.byteLength + scales.byteLength + (zeroPoints?.byteLength ?? 0) + (correction?.byteLength ?? 0);
  return Object.freeze({ weight, bits: config.bits, storedBits: bits, zeroCorrection: fractional, bytes });
}
