import { quantConfig } from '@layerquant/core';
import { describe, expect, it } from 'vitest';
import { asymmetricMinMaxInit, dequantizeGroups, roundToCodes } from './asymmetric-init.js';
import { groupLayout, groupedValues, ungroupValues } from './grouping.js';

function init(values: number[], bits: number, roundZero = false) {
  const grouped = Float32Array.from(values);
  const scale = new Float32Array(1);
  const zero = new Float32Array(1);
  asymmetricMinMaxInit(grouped, values.length, bits, roundZero, scale, zero);
  const codes = new Uint8Array(values.length);
  roundToCodes(grouped, values.length, bits, scale, zero, codes);
  return { scale: scale[0]!, zero: zero[0]!, codes: Array.from(codes), grouped, scaleArray: scale, zeroArray: zero, codeArray: codes };
}

describe('asymmetric min/max init (RTN)', () => {
  it('computes s = max_v / (max - min), z = -min * s and rounds half to even, by hand', () => {
    // [-1, 1] at 2 bits: s = 3/2, z = 1.5; W*s + z = 0, 2.25, 1.5 + 0.75 = 2.25 -> codes
    const a = init([-1, 0.5, 0.5, 1], 2);
    expect([a.scale, a.zero]).toEqual([1.5, 1.5]);
    expect(a.codes).toEqual([0, 2, 2, 3]);
    // s = 1, z = 0: 0.5 -> 0 and 2.5 -> 2 (ties to even), 1.5 -> 2
    expect(init([0, 0.5, 1.5, 2.5, 3], 2).codes).toEqual([0, 0, 2, 2, 3]);
  });

  it('uses s = 1 for a flat group and clamps s to 2e4', () => {
    const flat = init([0.25, 0.25, 0.25, 0.25], 4);
    expect([flat.scale, flat.zero]).toEqual([1, -0.25]);
    const tiny = init([0, 0.00005, 0.0001, 0], 4);
    expect(tiny.scale).toBe(1);
    const narrow = init([0, 0.001, 0.0005, 0.0002], 8);
    expect(narrow.scale).toBe(2e4);
    const values = new Float32Array(4);
    dequantizeGroups(flat.codeArray, 4, flat.scaleArray, flat.zeroArray, values);
    expect(Array.from(values)).toEqual([0.25, 0.25, 0.25, 0.25]);
  });

  it('rounds the zero when asked (the fork does for 4-bit)', () => {
    const a = init([-0.3, 0.1, 0.2, 0.7], 4, true);
    // s = 15 / 1.0, z = 0.3 * 15 = 4.5 in fp32, a tie: torch.round gives 4
    expect(a.scale).toBe(15);
    expect(a.zero).toBe(4);
    expect(init([-0.3, 0.1, 0.2, 0.7], 4, false).zero).toBe(4.5);
  });

  it('matches a float64 transcription of RTN on a real-looking group within fp32 rounding', () => {
    const values = [-0.031, 0.012, 0.0044, -0.0071, 0.027, 0.019, -0.0003, 0.0151];
    const a = init(values, 3);
    const min = Math.min(...values.map(Math.fround));
    const max = Math.max(...values.map(Math.fround));
    const s = 7 / (max - min);
    expect(a.scale).toBeCloseTo(s, 3);
    expect(a.zero).toBeCloseTo(-min * s, 4);
    expect(a.codes).toEqual(values.map((w) => Math.min(7, Math.max(0, Math.round(Math.fround(w) * s - min * s)))));
  });
});

describe('grouping', () => {
  it('axis 1 groups contiguous values along the input dimension; axis 0 takes the columns of W.reshape(g, -1)', () => {
    const data = Float32Array.from([0, 1, 2, 3, 4, 5, 6, 7]); // [2, 4]
    const row = groupLayout('w', [2, 4], quantConfig(4, 2));
    expect(row.groupCount).toBe(4);
    expect(groupedValues(data, row)).toBe(data);
    // reshape(2, -1) = [[0,1,2,3],[4,5,6,7]]; groups are its columns: (0,4), (1,5), (2,6), (3,7)
    const column = groupLayout('w', [2, 4], quantConfig(4, 2, { axis: 0 }));
    const grouped = groupedValues(data, column);
    expect(Array.from(grouped)).toEqual([0, 4, 1, 5, 2, 6, 3, 7]);
    expect(ungroupValues(grouped, column)).toEqual(data);
  });

  it('needs a group size that divides the row length', () => {
    expect(() => groupLayout('model.layers.0.mlp.down_proj.weight', [256, 640], quantConfig(4, 96))).toThrow(
      /option "groupSize": 96 does not divide the row length 640 of tensor "model.layers.0.mlp.down_proj.weight"; pick a group size that divides it \(e\.g\. 32, 64, 128\)$/,
    );
    // the hint names only sizes that divide the row (48: 16; none of the usual ones divides 36)
    expect(() => groupLayout('w', [4, 48], quantConfig(4, 32))).toThrow(/divides it \(e\.g\. 16\)$/);
    expect(() => groupLayout('w', [4, 36], quantConfig(4, 32))).toThrow(/divides it$/);
  });
});
