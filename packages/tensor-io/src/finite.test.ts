import { NonFiniteWeightError, type DType } from '@layerquant/core';
import { describe, expect, it } from 'vitest';
import { decodeToFloat32 } from './dtype.js';
import { checkFinite, firstNonFinite } from './finite.js';

/** Oracle: decode to float32 (tested against every bit pattern in dtype.test.ts), then the first !isFinite. */
function oracle(bytes: Uint8Array, dtype: DType): number {
  return decodeToFloat32(bytes, dtype).findIndex((v) => !Number.isFinite(v));
}

describe('firstNonFinite', () => {
  it('finds the first NaN or infinity on the stored bits, as decoding would (random bit patterns, every float dtype)', () => {
    let seed = 7;
    const next = () => ((seed = (Math.imul(seed, 1_103_515_245) + 12_345) >>> 0) >>> 8) & 0xff;
    for (const dtype of ['BF16', 'F16', 'F32', 'F64'] as const) {
      for (let trial = 0; trial < 200; trial++) {
        const bytes = new Uint8Array(8 * (1 + (trial % 40)));
        for (let i = 0; i < bytes.length; i++) bytes[i] = trial % 3 === 0 ? next() : next() & 0x3f; // some with, some without
        const expected = oracle(bytes, dtype);
        expect(firstNonFinite(bytes, dtype)?.index ?? -1, `${dtype} trial ${trial}`).toBe(expected);
      }
    }
    expect(firstNonFinite(new Uint8Array([0xff, 0xff]), 'I16')).toBeUndefined();
  });

  it('names tensor, file, value and row/column', () => {
    const data = new Float32Array(12);
    data[7] = Number.NEGATIVE_INFINITY;
    const bytes = new Uint8Array(data.buffer);
    expect(() => checkFinite('w', 'f.safetensors', 'F32', [3, 4], bytes)).toThrow(NonFiniteWeightError);
    expect(() => checkFinite('w', 'f.safetensors', 'F32', [3, 4], bytes)).toThrow(/f\.safetensors \(tensor "w"\): value -Infinity at flat index 7 \(row 1, column 3 of \[3, 4\]\)/);
    data[7] = Number.NaN;
    expect(() => checkFinite('w', 'f', 'F32', [12], bytes)).toThrow(/value NaN at flat index 7;/);
    // Unaligned views are read too.
    const shifted = new Uint8Array(13);
    shifted.set(new Uint8Array(new Uint16Array([0x3f80, 0x7f80]).buffer), 1);
    expect(firstNonFinite(shifted.subarray(1, 5), 'BF16')).toEqual({ index: 1, value: 'Infinity' });
  });
});
