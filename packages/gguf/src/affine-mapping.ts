import type { QuantConfig, QuantizedTensor } from '@layerquant/core';
import { unpackQuantizedCodes } from '@layerquant/quantizers';
import { InvalidDataError } from '@layerquant/core';
import { LEGACY_BLOCK, LEGACY_LAYOUTS, writeLegacyBlock } from './legacy-blocks.js';
import { toHalfBits } from './half.js';

// Affine checkpoints (RTN, HQQ: x = (q - z) / s per group) in llama.cpp's blocks with a min, Q4_1 and Q5_1
// (x = d q + m per block of 32): with d = fp16(1/s) and m = fp16(-z/s) the codes are kept as they are, so the only
// change to the weights is the fp16 rounding of d and m. Groups of 64 or 128 repeat their (d, m) over their blocks
// of 32. 2- and 3-bit codes fit Q4_1 as they are (one or two bits unused, as ONNX stores 3-bit codes as 4-bit).
// Symmetric configs (zero fixed at 2^(bits-1), onnxruntime's q4) need no min: x = d (q - 2^(bits-1)) is Q4_0 for
// <= 4 bits, Q5_0 for 5 and Q8_0 (codes as int8) for 6 to 8, with the codes shifted onto the block's centre.
// Asymmetric 6- and 8-bit codes, strided groups (axis 0) and groups that are not whole blocks of 32 have no exact
// form: the export re-encodes their dequantized weights.

export type ExactAffineType = 'Q4_0' | 'Q4_1' | 'Q5_0' | 'Q5_1' | 'Q8_0';

/** The GGUF type that holds a config's codes exactly, or undefined. */
export function exactAffineType(config: QuantConfig): ExactAffineType | undefined {
  if (config.axis !== 1 || config.groupSize % LEGACY_BLOCK !== 0) return undefined;
  if (config.symmetric) return config.bits <= 4 ? 'Q4_0' : config.bits === 5 ? 'Q5_0' : config.bits <= 8 ? 'Q8_0' : undefined;
  if (config.bits <= 4) return 'Q4_1';
  if (config.bits === 5) return 'Q5_1';
  return undefined;
}

/** Where a symmetric block type centres its codes (x = d (code - centre)); Q8_0 stores signed codes. */
const CENTRE: Readonly<Record<'Q4_0' | 'Q5_0' | 'Q8_0', number>> = Object.freeze({ Q4_0: 8, Q5_0: 16, Q8_0: 0 });

/**
 * The Q4_1 / Q5_1 bytes of an affine quantized matrix. `rowOrder[r]` is the source row written at row r (the q/k
 * permutation); `multipliers` are the exact 1/s where the checkpoint stores them quantized (scaleDtype U8).
 */
export function affineToGgml(q: QuantizedTensor, type: ExactAffineType, rowOrder?: Int32Array, multipliers?: Float32Array): Uint8Array {
  const [rows, columns] = q.shape;
  const codes = unpackQuantizedCodes(q);
  const blockBytes = LEGACY_LAYOUTS[type].bytes;
  const blocksPerRow = columns / LEGACY_BLOCK;
  const out = new Uint8Array(rows * blocksPerRow * blockBytes);
  const groupSize = q.config.groupSize;
  const symmetric = type === 'Q4_0' || type === 'Q5_0' || type === 'Q8_0';
  const block = new Int16Array(LEGACY_BLOCK);
  for (let r = 0; r < rows; r++) {
    const source = rowOrder ? rowOrder[r]! : r;
    for (let b = 0; b < blocksPerRow; b++) {
      const first = source * columns + b * LEGACY_BLOCK;
      const group = Math.floor(first / groupSize);
      const multiplier = multipliers ? multipliers[group]! : 1 / q.scale[group]!;
      const dBits = toHalfBits(multiplier);
      const at = (r * blocksPerRow + b) * blockBytes;
      if (!symmetric) {
        writeLegacyBlock(type, out, at, codes.subarray(first, first + LEGACY_BLOCK), dBits, toHalfBits(-q.zero[group]! * multiplier));
        continue;
      }
      const zero = q.zero[group]!;
      if (zero !== 2 ** (q.config.bits - 1)) throw new InvalidDataError(`tensor "${q.name}"`, `is marked symmetric but group ${group} has zero ${zero}, not ${2 ** (q.config.bits - 1)}; the checkpoint is corrupt`);
      const shift = CENTRE[type] - zero;
      for (let j = 0; j < LEGACY_BLOCK; j++) block[j] = codes[first + j]! + shift;
      writeLegacyBlock(type, out, at, block, dBits);
    }
  }
  return out;
}
