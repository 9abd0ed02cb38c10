import { roundHalfEven } from './rounding.js';

const fround = Math.fround;
/** A group whose fp32 range is at most this gets the scale 1 in the min/max init (upstream HQQ's rule). */
export const SMALL_RANGE = Math.fround(1e-4);

/** Largest code of `bits`: 2^b - 1. */
export function maxCode(bits: number): number {
  return 2 ** bits - 1;
}

/**
 * The asymmetric min/max init of RTN and HQQ, per group, in fp32 as upstream HQQ computes it:
 * `s = max_v / (max - min)` (1 where max - min <= 1e-4), clamped to <= 2e4; `z = -min * s` (rounded when `roundZero`).
 * `grouped` holds `scale.length` runs of `groupSize` values.
 */
export function asymmetricMinMaxInit(
  grouped: Float32Array,
  groupSize: number,
  bits: number,
  roundZero: boolean,
  scale: Float32Array,
  zero: Float32Array,
): void {
  const maxV = maxCode(bits);
  for (let k = 0, base = 0; k < scale.length; k++, base += groupSize) {
    let min = grouped[base]!;
    let max = min;
    for (let j = 1; j < groupSize; j++) {
      const w = grouped[base + j]!;
      if (w < min) min = w;
      if (w > max) max = w;
    }
    // + 0 turns a -0 into +0, so the result does not depend on the scan order (the SIMD kernel scans lanes)
    min += 0;
    max += 0;
    const range = fround(max - min);
    // torch compares the fp32 range with 1e-4 cast to fp32. Upstream writes `max_v / range` with max_v a Python
    // number: torch evaluates scalar / tensor as reciprocal(tensor) * scalar, two fp32 roundings, and the scale is
    // then 1 ulp off a correctly rounded division in about a quarter of the groups, which flips codes at exact ties.
    let s = Math.abs(range) <= SMALL_RANGE ? 1 : fround(fround(1 / range) * maxV);
    if (s > 2e4) s = 2e4;
    let z = fround(-min * s);
    if (roundZero) z = roundHalfEven(z);
    scale[k] = s;
    zero[k] = z;
  }
}

/** `Wq = clamp(round(W*s + z), 0, max_v)` in fp32, round half to even: the codes of every group. */
export function roundToCodes(
  grouped: Float32Array,
  groupSize: number,
  bits: number,
  scale: Float32Array,
  zero: Float32Array,
  codes: Uint8Array,
): void {
  const maxV = maxCode(bits);
  for (let k = 0, base = 0; k < scale.length; k++, base += groupSize) {
    const s = scale[k]!;
    const z = zero[k]!;
    for (let j = 0; j < groupSize; j++) {
      const q = roundHalfEven(fround(fround(grouped[base + j]! * s) + z));
      codes[base + j] = q < 0 ? 0 : q > maxV ? maxV : q;
    }
  }
}

/**
 * Dequantization `(Wq - z) / s`, computed as upstream HQQ does: the stored fp32 reciprocal `1/s` multiplies
 * `(Wq - z)`. Writes group-major values into `out`.
 */
export function dequantizeGroups(codes: Uint8Array, groupSize: number, scale: Float32Array, zero: Float32Array, out: Float32Array): void {
  for (let k = 0, base = 0; k < scale.length; k++, base += groupSize) {
    const inverse = fround(1 / scale[k]!);
    const z = zero[k]!;
    for (let j = 0; j < groupSize; j++) out[base + j] = fround(fround(codes[base + j]! - z) * inverse);
  }
}
