import { describe, expect, it } from 'vitest';
import { roundHalfEven } from './rounding.js';
import { seededRandom } from './testing/random-matrix.js';

/** Float64 oracle: nearest integer, ties to the even one. */
function nearestEven(x: number): number {
  const floor = Math.floor(x);
  const fraction = x - floor;
  if (fraction < 0.5) return floor;
  if (fraction > 0.5) return floor + 1;
  return floor % 2 === 0 ? floor : floor + 1;
}

describe('roundHalfEven', () => {
  it('rounds ties to even as torch.round does', () => {
    expect([0.5, 1.5, 2.5, 3.5, -0.5, -1.5, -2.5, 14.5, 15.5].map(roundHalfEven)).toEqual([0, 2, 2, 4, 0, -2, -2, 14, 16]);
    expect([0.49999997, 0.50000006, 7.4999995, -3.2].map((x) => roundHalfEven(Math.fround(x)))).toEqual([0, 1, 7, -3]);
  });
  it('agrees with the float64 oracle on a million float32 values', () => {
    const random = seededRandom(3);
    let mismatches = 0;
    for (let i = 0; i < 1_000_000; i++) {
      const x = Math.fround((random() - 0.5) * 600);
      // every third value is an exact tie
      const value = i % 3 === 0 ? Math.round(x * 2) / 2 : x;
      if (roundHalfEven(value) !== nearestEven(value)) mismatches++;
    }
    expect(mismatches).toBe(0);
  });
});
