import { describe, expect, it } from 'vitest';
import { bf16BitsToFloat32, f16BitsToFloat32, float32ToBf16Bits, float32ToF16Bits } from './dtype.js';

/** Float64 oracle: the nearest representable value in a sorted list, ties to the even bit pattern. */
function nearestBits(x: number, values: Float64Array, bits: Uint16Array): number {
  let lo = 0;
  let hi = values.length - 1;
  while (hi - lo > 1) {
    const mid = (lo + hi) >> 1;
    if (values[mid]! <= x) lo = mid;
    else hi = mid;
  }
  const dLo = Math.abs(x - values[lo]!);
  const dHi = Math.abs(values[hi]! - x);
  if (dLo < dHi) return bits[lo]!;
  if (dHi < dLo) return bits[hi]!;
  return (bits[lo]! & 1) === 0 ? bits[lo]! : bits[hi]!;
}

function finiteSorted(decode: (b: Uint16Array) => Float32Array): { values: Float64Array; bits: Uint16Array } {
  const all = new Uint16Array(65536).map((_, i) => i);
  const decoded = decode(all);
  const pairs: Array<[number, number]> = [];
  for (let i = 0; i < 65536; i++) {
    const v = decoded[i]!;
    if (Number.isFinite(v) && !(v === 0 && i & 0x8000)) pairs.push([v, i]);
  }
  pairs.sort((a, b) => a[0] - b[0]);
  return { values: Float64Array.from(pairs, (p) => p[0]), bits: Uint16Array.from(pairs, (p) => p[1]) };
}

function randomFloats(n: number, scale: number): Float32Array {
  const out = new Float32Array(n);
  let seed = 12345;
  for (let i = 0; i < n; i++) {
    seed = (seed * 1103515245 + 12345) >>> 0;
    const u = seed / 2 ** 32;
    seed = (seed * 1103515245 + 12345) >>> 0;
    out[i] = (u - 0.5) * scale * 2 ** ((seed % 40) - 20);
  }
  return out;
}

describe('half precision', () => {
  it('f16 -> f32 -> f16 is the identity on every non-NaN bit pattern', () => {
    const all = new Uint16Array(65536).map((_, i) => i);
    const back = float32ToF16Bits(f16BitsToFloat32(all));
    for (let i = 0; i < 65536; i++) {
      const isNaN = (i & 0x7c00) === 0x7c00 && (i & 0x3ff) !== 0;
      if (!isNaN) expect(back[i]).toBe(i);
    }
  });
  it('f32 -> f16 rounds to the nearest value, ties to even (float64 oracle)', () => {
    const { values, bits } = finiteSorted(f16BitsToFloat32);
    const xs = randomFloats(20000, 100);
    const got = float32ToF16Bits(xs);
    for (let i = 0; i < xs.length; i++) {
      const x = xs[i]!;
      if (Math.abs(x) >= 65520) continue;
      const expected = nearestBits(x, values, bits);
      if (x === 0) continue;
      expect(got[i], `x=${x}`).toBe(expected);
    }
    expect(float32ToF16Bits(new Float32Array([1e6, -1e6]))).toEqual(new Uint16Array([0x7c00, 0xfc00]));
  });
});

describe('bfloat16', () => {
  it('bf16 -> f32 -> bf16 is the identity on every non-NaN bit pattern', () => {
    const all = new Uint16Array(65536).map((_, i) => i);
    const back = float32ToBf16Bits(bf16BitsToFloat32(all));
    for (let i = 0; i < 65536; i++) {
      const isNaN = (i & 0x7f80) === 0x7f80 && (i & 0x7f) !== 0;
      if (!isNaN) expect(back[i]).toBe(i);
    }
  });
  it('f32 -> bf16 rounds to the nearest value, ties to even (float64 oracle)', () => {
    const { values, bits } = finiteSorted(bf16BitsToFloat32);
    const xs = randomFloats(20000, 1e4);
    const got = float32ToBf16Bits(xs);
    for (let i = 0; i < xs.length; i++) {
      if (xs[i] === 0) continue;
      expect(got[i]).toBe(nearestBits(xs[i]!, values, bits));
    }
  });
});
