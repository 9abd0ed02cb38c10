import { maxCode } from './asymmetric-init.js';

const fround = Math.fround;

/** C's roundf: half away from zero (what onnxruntime's block quantizer rounds codes with). */
function roundHalfAway(x: number): number {
  return x < 0 ? -Math.floor(-x + 0.5) : Math.floor(x + 0.5);
}

/**
 * Symmetric round to nearest, per group, as onnxruntime's block quantizer computes it for MatMulNBits without zero
 * points (the q4 of transformers.js' `scripts/quantize.py`): the group's value of largest magnitude `v` (its max
 * where |max| > |min|, else its min) maps to code 0, `scale = v / -2^(b-1)`, codes
 * `clamp(roundf(w * (1/scale) + 2^(b-1)), 0, 2^b - 1)`, zero point 2^(b-1). In layerquant's convention
 * (dequant = (code - z) * fp32(1/s)) the stored `s` is the fp32 reciprocal the codes were computed with and `z` is
 * 2^(b-1); a group of zeros gets s = 1 (its codes are all 2^(b-1), so it dequantizes to 0, as scale 0 does there).
 */
export function symmetricQuantize(grouped: Float32Array, groupSize: number, bits: number, scale: Float32Array, zero: Float32Array, codes: Uint8Array): void {
  const maxV = maxCode(bits);
  const mid = 2 ** (bits - 1);
  for (let k = 0, base = 0; k < scale.length; k++, base += groupSize) {
    let min = grouped[base]!;
    let max = min;
    for (let j = 1; j < groupSize; j++) {
      const w = grouped[base + j]!;
      if (w < min) min = w;
      if (w > max) max = w;
    }
    const extreme = Math.abs(max) > Math.abs(min) ? max : min;
    const groupScale = fround(extreme / -mid);
    const reciprocal = groupScale !== 0 ? fround(1 / groupScale) : 0;
    scale[k] = groupScale !== 0 ? reciprocal : 1;
    zero[k] = mid;
    for (let j = 0; j < groupSize; j++) {
      const q = roundHalfAway(fround(fround(grouped[base + j]! * reciprocal) + mid));
      codes[base + j] = q < 0 ? 0 : q > maxV ? maxV : q;
    }
  }
}
