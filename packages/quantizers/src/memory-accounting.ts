import { bitsPerWeight, memoryMB, type QuantConfig } from '@layerquant/core';
import { wordsPerRow } from './bit-packing.js';
import { scaleZeroBytes, type ScaleDtype } from './scale-storage.js';

/** Bytes per scale and per zero in the quantized checkpoint (float32: dequantization is exact to the solver's). */
export const META_BYTES_PER_VALUE = 4;

/** Memory of one matrix under a config: the paper's accounting and the real packed size. */
export interface MatrixMemory {
  readonly params: number;
  /** Paper bits per weight, `b1 + 2*b2/g1 + 32/(g1*g2)` (16 for a matrix left in float). */
  readonly paperBitsPerWeight: number;
  /** Paper memory in bytes: paperBitsPerWeight * params / 8. */
  readonly paperBytes: number;
  /** Packed codes: rows x 32-bit words (3-bit: 10 codes per word, rows padded). */
  readonly codeBytes: number;
  /** Scales and zeros as stored (one pair per group; float32 by default; U8 adds their fp16 ranges). */
  readonly metaBytes: number;
  /** codeBytes + metaBytes: what the quantized checkpoint really stores for the matrix. */
  readonly packedBytes: number;
  /** 8 * packedBytes / params. */
  readonly packedBitsPerWeight: number;
}

/**
 * Memory of a [rows, columns] matrix quantized with `config`, or left in float (`null`, counted as 16-bit for the
 * paper and as its stored bytes, `floatBytesPerValue`, for the real size).
 */
/** `scaleDtype`: how the scales and zeros are stored (F32, the default; F16; U8, scale-storage.ts). */
export function matrixMemory(shape: readonly [number, number], config: QuantConfig | null, floatBytesPerValue = 2, scaleDtype: ScaleDtype = 'F32'): MatrixMemory {
  const [rows, columns] = shape;
  const params = rows * columns;
  if (!config) {
    const bytes = params * floatBytesPerValue;
    return Object.freeze({
      params, paperBitsPerWeight: 16, paperBytes: params * 2, codeBytes: 0, metaBytes: bytes, packedBytes: bytes,
      packedBitsPerWeight: 8 * floatBytesPerValue,
    });
  }
  const paperBitsPerWeight = bitsPerWeight(config);
  const codeBytes = rows * wordsPerRow(columns, config.bits) * 4;
  const metaBytes = scaleZeroBytes(params / config.groupSize, scaleDtype);
  const packedBytes = codeBytes + metaBytes;
  return Object.freeze({
    params, paperBitsPerWeight, paperBytes: (paperBitsPerWeight * params) / 8, codeBytes, metaBytes, packedBytes,
    packedBitsPerWeight: (8 * packedBytes) / params,
  });
}

/** Totals over matrices: parameter-weighted paper bits per weight, paper MB, real packed bytes. */
export interface ModelMemory {
  readonly params: number;
  readonly paperBitsPerWeight: number;
  /** MB = 2^20 bytes, as the authors compute `memmb`. */
  readonly paperMB: number;
  readonly packedBytes: number;
  readonly packedBitsPerWeight: number;
}

/** Sums matrixMemory over an allocation: any mix of configs and `null` (left in float). */
export function modelMemory(
  matrices: readonly { readonly shape: readonly [number, number]; readonly config: QuantConfig | null }[],
  floatBytesPerValue = 2,
): ModelMemory {
  let params = 0;
  let bits = 0;
  let packedBytes = 0;
  for (const m of matrices) {
    const memory = matrixMemory(m.shape, m.config, floatBytesPerValue);
    params += memory.params;
    bits += memory.paperBitsPerWeight * memory.params;
    packedBytes += memory.packedBytes;
  }
  const paperBitsPerWeight = params > 0 ? bits / params : 0;
  return Object.freeze({
    params,
    paperBitsPerWeight,
    paperMB: memoryMB(paperBitsPerWeight, params),
    packedBytes,
    packedBitsPerWeight: params > 0 ? (8 * packedBytes) / params : 0,
  });
}
