import { quantConfig, type InputHessian } from '@layerquant/core';
import { describe, expect, it } from 'vitest';
import { baqQuantizer, createBaqQuantizer, dequantizeBaq, equalLossColumnBits } from './baq.js';
import { packColumnCodes, unpackColumnCodes } from './bit-packing.js';
import { gptqQuantizer } from './gptq.js';
import { baqPlugin } from './registry.js';
import { runQuantizerConformance } from './testing/quantizer-conformance.js';
import { randomInputs, randomMatrix, seededRandom } from './testing/random-matrix.js';

runQuantizerConformance(baqPlugin);
runQuantizerConformance(createBaqQuantizer({ kernel: 'typescript', actOrder: true }));

describe('equalLossColumnBits', () => {
  const objective = (losses: ArrayLike<number>, bits: ArrayLike<number>) => Array.from(losses).reduce((sum, c, j) => sum + c * 4 ** -bits[j]!, 0);

  it('spends exactly columns x average bits, and matches the closed form where it is whole', () => {
    // R_j = R + (1/2) log2(c_j / geomean c): 3 + {-3, -1, 1, 3}
    expect([...equalLossColumnBits(Float64Array.from([1, 16, 256, 4096]), 3)]).toEqual([0, 2, 4, 6]);
    expect([...equalLossColumnBits(Float64Array.from([5, 5, 5, 5, 5]), 2)]).toEqual([2, 2, 2, 2, 2]);
    const random = seededRandom(3);
    const losses = Float64Array.from({ length: 300 }, () => random() ** 6);
    for (const average of [2, 3, 4]) expect(equalLossColumnBits(losses, average).reduce((a, b) => a + b, 0)).toBe(300 * average);
  });

  it('minimizes sum c_j 4^-R_j over every allocation (brute force, 5 columns)', () => {
    const random = seededRandom(7);
    for (let trial = 0; trial < 20; trial++) {
      const losses = Float64Array.from({ length: 5 }, () => random() ** 3);
      const average = 1 + (trial % 3);
      let best = Infinity;
      const bits = [0, 0, 0, 0, 0];
      const search = (j: number, left: number) => {
        if (j === 4) {
          if (left <= 8) {
            bits[4] = left;
            best = Math.min(best, objective(losses, bits));
          }
          return;
        }
        for (let b = 0; b <= Math.min(8, left); b++) {
          bits[j] = b;
          search(j + 1, left - b);
        }
      };
      search(0, 5 * average);
      expect(objective(losses, equalLossColumnBits(losses, average))).toBeCloseTo(best, 12);
    }
  });

  it('caps a column at 8 bits', () => {
    expect([...equalLossColumnBits(Float64Array.from([1e12, 1, 1]), 4)]).toEqual([8, 2, 2]);
  });
});

describe('column-width packing', () => {
  it('round-trips codes of widths 0-8 through one bitstream per row', () => {
    const random = seededRandom(5);
    const columns = 37;
    const columnBits = Uint8Array.from({ length: columns }, () => Math.floor(random() * 9));
    const rows = 3;
    const codes = Uint8Array.from({ length: rows * columns }, (_, i) => Math.floor(random() * 2 ** columnBits[i % columns]!));
    const stride = Math.ceil(columnBits.reduce((a, b) => a + b, 0) / 32) + 1;
    const packed = packColumnCodes(codes, rows, columns, columnBits, stride);
    expect(unpackColumnCodes(packed, rows, columns, columnBits, stride)).toEqual(codes);
    expect(() => packColumnCodes(codes, rows, columns, columnBits, 1)).toThrow(RangeError);
  });
});

describe('the baq quantizer', () => {
  const hessianError = (w: Float32Array, values: Float32Array, rows: number, h: InputHessian) => {
    const n = h.columns;
    let total = 0;
    for (let r = 0; r < rows; r++) {
      for (let i = 0; i < n; i++) {
        const di = w[r * n + i]! - values[r * n + i]!;
        for (let j = 0; j < n; j++) total += di * h.data[i * n + j]! * (w[r * n + j]! - values[r * n + j]!);
      }
    }
    return total;
  };

  it('gives the columns different widths at the config average and dequantizes each on its own grid', () => {
    const { hessian } = randomInputs(128, 400, 21, [5]);
    const weight = randomMatrix(16, 128, 22, 0.05, 3);
    const q = baqQuantizer.quantize(weight, quantConfig(3, 64), { hessian });
    const widths = [...q.columnBits!];
    expect(widths.reduce((a, b) => a + b, 0)).toBe(128 * 3);
    expect(new Set(widths).size).toBeGreaterThan(1);
    // the dead column (never a non-zero input) costs nothing: no bits
    expect(widths[5]).toBe(0);
    const values = dequantizeBaq(q);
    for (let r = 0; r < 16; r++) expect(values[r * 128 + 5]).toBe(0);
    expect(baqQuantizer.dequantize(q)).toEqual(values);
    expect(q.report).toEqual({ deadColumns: 1, dampening: 0.01, dampeningRetries: 0 });
  });

  it("has a lower Hessian-weighted error than GPTQ at the same average bits where the columns' inputs differ in scale", () => {
    const { hessian } = randomInputs(128, 400, 31);
    const weight = randomMatrix(32, 128, 32, 0.05, 3);
    for (const bits of [2, 3]) {
      const config = quantConfig(bits, 64);
      const baq = hessianError(weight.data, baqQuantizer.dequantize(baqQuantizer.quantize(weight, config, { hessian })), 32, hessian);
      const gptq = hessianError(weight.data, gptqQuantizer.dequantize(gptqQuantizer.quantize(weight, config, { hessian })), 32, hessian);
      expect(baq, `${bits} bits`).toBeLessThan(gptq);
    }
  });

  it('refuses a symmetric config', () => {
    const { hessian } = randomInputs(64, 100, 3);
    expect(() => baqQuantizer.quantize(randomMatrix(4, 64, 1), quantConfig(3, 32, { symmetric: true }), { hessian })).toThrow(/asymmetric.*b3g32-sym/);
  });
});
