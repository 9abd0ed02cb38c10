import type { QuantConfig, QuantizedTensor } from '@layerquant/core';
import { unpackQuantizedCodes } from '@layerquant/quantizers';
import { LEGACY_BLOCK, LEGACY_LAYOUTS, writeAffineBlock } from './legacy-blocks.js';
import { toHalfBits } from './half.js';

// Affine checkpoints (RTN, HQQ: x = (q - z) / s per group) in llama.cpp's blocks with a min, Q4_1 and Q5_1
// (x = d q + m per block of 32): with d = fp16(1/s) and m = fp16(-z/s) the codes are kept as they are, so the only
// change to the weights is the fp16 rounding of d and m. Groups of 64 or 128 repeat their (d, m) over their blocks
// of 32. 2- and 3-bit codes fit Q4_1 as they are (one or two bits unused, as ONNX stores 3-bit codes as 4-bit).
// 6- and 8-bit codes, strided groups (axis 0) and groups that are not whole blocks of 32 have no exact form: the
// export re-encodes their dequantized weights.

/** The GGUF type that holds a config's codes exactly, or undefined. */
export function exactAffineType(config: QuantConfig): 'Q4_1' | 'Q5_1' | undefined {
  if (config.axis !== 1 || config.groupSize % LEGACY_BLOCK !== 0) return undefined;
  if (config.bits <= 4) return 'Q4_1';
  if (config.bits === 5) return 'Q5_1';
  return undefined;
}

/**
 * The Q4_1 / Q5_1 bytes of an affine quantized matrix. `rowOrder[r]` is the source row written at row r (the q/k
 * permutation); `multipliers` are the exact 1/s where the checkpoint stores them quantized (scaleDtype U8).
 */
export function affineToGgml(q: QuantizedTensor, type: 'Q4_1' | 'Q5_1', rowOrder?: Int32Array, multipliers?: Float32Array): Uint8Array {
  const [rows, columns] = q.shape;
  const codes = unpackQuantizedCodes(q);
  const blockBytes = LEGACY_LAYOUTS[type].bytes;
  const blocksPerRow = columns / LEGACY_BLOCK;
  const out = new Uint8Array(rows * blocksPerRow * blockBytes);
  const groupSize = q.config.groupSize;
  for (let r = 0; r < rows; r++) {
    const source = rowOrder ? rowOrder[r]! : r;
    for (let b = 0; b < blocksPerRow; b++) {
      const first = source * columns + b * LEGACY_BLOCK;
      const group = Math.floor(first / groupSize);
      const multiplier = multipliers ? multipliers[group]! : 1 / q.scale[group]!;
      const dBits = toHalfBits(multiplier);
      const mBits = toHalfBits(-q.zero[group]! * multiplier);
      writeAffineBlock(type, out, (r * blocksPerRow + b) * blockBytes, codes.subarray(first, first + LEGACY_BLOCK), dBits, mBits);
    }
  }
  return out;
}
