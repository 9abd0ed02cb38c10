import { InvalidDataError, ShapeMismatchError, configName, quantConfig, seededNormal } from '@layerquant/core';
import { checkedQuantizer, hqqQuantizer } from '@layerquant/quantizers';
import { describe, expect, it } from 'vitest';
import { decodeGgml, encodeGgml } from './codecs.js';
import { GGML_QUANTIZER_TYPES, createGgmlQuantizer, dequantizeGgml, ggmlBlocks, ggmlPlugin, ggmlTypeOfConfig, quantizeGgml } from './ggml-quantizer.js';
import { ggufTensorBytes } from './ggml-types.js';
import { float32ToF16Bits, f16BitsToFloat32 } from '@layerquant/tensor-io';

/** Gaussian weights with a few outliers, a zero row and a constant row: the blocks an encoder finds hardest. */
function weights(rows: number, columns: number, seed: number): Float32Array {
  const random = seededNormal(seed);
  const data = Float32Array.from({ length: rows * columns }, () => 0.02 * random());
  for (let i = 0; i < rows * columns; i += 997) data[i] = 0.4 * random();
  data.fill(0, columns, 2 * columns);
  data.fill(0.013, 2 * columns, 3 * columns);
  return data;
}

const sameBits = (a: Float32Array, b: Float32Array) => {
  let differ = 0;
  for (let i = 0; i < a.length; i++) if (!Object.is(a[i], b[i]) && !(a[i] === 0 && b[i] === 0)) differ++;
  return differ;
};

describe('the ggml quantizer (llama.cpp block types as configs)', () => {
  const [rows, columns] = [12, 512];
  const data = weights(rows, columns, 3);
  const weight = { name: 'blk.0.w', dtype: 'F32' as const, shape: [rows, columns] as const, data };

  for (const { type, config } of GGML_QUANTIZER_TYPES) {
    it(`${configName(config)} is ${type}: dequantizes to llama.cpp's decode of the encoder's bytes, and the export rebuilds those bytes`, () => {
      expect(ggmlTypeOfConfig(config, columns)).toBe(type);
      const bytes = encodeGgml(type, data, [rows, columns]);
      const decoded = decodeGgml(type, bytes, [rows, columns]);
      const q = quantizeGgml(weight, config);
      // the values llama.cpp computes from the file, bit for bit
      expect(sameBits(dequantizeGgml(q), decoded)).toBe(0);
      const rebuilt = ggmlBlocks(q);
      expect(rebuilt.type).toBe(type);
      expect(rebuilt.bytes.length).toBe(ggufTensorBytes(type, [rows, columns]));
      expect(sameBits(decodeGgml(type, rebuilt.bytes, [rows, columns]), decoded)).toBe(0);
      // The same bytes where the factorization of d sc is unique; Q3_K and Q6_K's signed scales also factor as
      // (-d)(-sc), the same values in other bytes.
      if (type !== 'Q3_K' && type !== 'Q6_K') expect(Buffer.compare(Buffer.from(rebuilt.bytes), Buffer.from(bytes))).toBe(0);
      // codes fit the config's bits; the host's check of a plug-in's output passes
      expect(() => checkedQuantizer(ggmlPlugin).quantize(weight, config)).not.toThrow();
    });
  }

  it('writes rows in the order asked (the q/k permutation) and refuses scales that are not its exact multipliers', () => {
    const config = quantConfig(4, 32);
    const q = quantizeGgml(weight, config);
    const order = Int32Array.from({ length: rows }, (_, r) => (r * 5) % rows);
    const plain = ggmlBlocks(q).bytes;
    const permuted = ggmlBlocks(q, order).bytes;
    const rowBytes = plain.length / rows;
    for (let r = 0; r < rows; r++) expect(permuted.subarray(r * rowBytes, (r + 1) * rowBytes)).toEqual(plain.subarray(order[r]! * rowBytes, (order[r]! + 1) * rowBytes));
    // a checkpoint stored with fp16 scales: products of 17 bits rounded to 11
    const rounded = f16BitsToFloat32(float32ToF16Bits(q.scale));
    const damaged = { ...q, scale: rounded };
    expect(sameBits(rounded, q.scale)).toBeGreaterThan(0);
    expect(() => ggmlBlocks(damaged)).toThrow(InvalidDataError);
    expect(() => ggmlBlocks(damaged)).toThrow(/blk\.0\.w.*--scale-dtype f32/);
  });

  it("stores b4g32 and b5g32 as Q4_1 and Q5_1 in rows that are not whole super-blocks, and refuses the k-quants that have no such block", () => {
    const narrow = { name: 'blk.0.ffn_down.weight', dtype: 'F32' as const, shape: [8, 640] as const, data: weights(8, 640, 5) };
    expect(ggmlTypeOfConfig(quantConfig(4, 32), 640)).toBe('Q4_1');
    expect(ggmlTypeOfConfig(quantConfig(5, 32), 640)).toBe('Q5_1');
    const q = quantizeGgml(narrow, quantConfig(4, 32));
    expect(ggmlBlocks(q).type).toBe('Q4_1');
    expect(sameBits(dequantizeGgml(q), decodeGgml('Q4_1', encodeGgml('Q4_1', narrow.data, [8, 640]), [8, 640]))).toBe(0);
    expect(() => quantizeGgml(narrow, quantConfig(6, 16, { symmetric: true }))).toThrow(ShapeMismatchError);
    expect(() => quantizeGgml(narrow, quantConfig(6, 16, { symmetric: true }))).toThrow(/ffn_down.*640.*b4g32 \(Q4_1\)/);
    expect(() => quantizeGgml(weight, quantConfig(3, 64))).toThrow(/b3g64 is not a llama\.cpp type.*b4g32 \(Q4_K\)/);
    expect(() => quantizeGgml(weight, quantConfig(4, 32, { axis: 0 }))).toThrow(/strided groups/);
  });

  it('--kquant-solver hqq: Q4_K and Q5_K take HQQ\'s sub-block grids (the hqq quantizer\'s, then quantized by the k-quant structure), decoded as llama.cpp decodes them', () => {
    const hqq = createGgmlQuantizer({ kquantSolver: 'hqq' });
    const leastSquares = createGgmlQuantizer();
    const distance = (a: Float32Array, b: Float32Array) => a.reduce((sum, v, i) => sum + Math.abs(v - b[i]!), 0);
    for (const bits of [4, 5]) {
      const config = quantConfig(bits, 32);
      const ours = hqq.quantize(weight, config);
      const [a, b] = [dequantizeGgml(ours), dequantizeGgml(leastSquares.quantize(weight, config))];
      // the hqq quantizer's own b4g32 / b5g32 (fractional zero): the values HQQ's solver chooses for these groups
      const reference = hqqQuantizer.dequantize(hqqQuantizer.quantize(weight, quantConfig(bits, 32, { roundZero: false })));
      expect(distance(a, reference), configName(config)).toBeLessThan(distance(b, reference));
      // the blocks are llama.cpp's: its decode of the rebuilt bytes is the checkpoint's values
      const rebuilt = ggmlBlocks(ours);
      expect(sameBits(decodeGgml(rebuilt.type, rebuilt.bytes, [rows, columns]), a)).toBe(0);
    }
    // a sub-block with no range to speak of (HQQ's init would give it the scale 1) does not coarsen the other sub-blocks
    // of its super-block: their squared error stays within 2x of least squares' (1000x before it was spanned)
    const flat = Float32Array.from(data.subarray(0, 4 * 256));
    flat.fill(-0.005, 0, 32);
    const narrow = { name: 'blk.0.flat', dtype: 'F32' as const, shape: [4, 256] as const, data: flat };
    const restError = (q: Float32Array) => q.subarray(32, 256).reduce((sum, v, i) => sum + (v - flat[32 + i]!) ** 2, 0);
    const flatHqq = restError(dequantizeGgml(hqq.quantize(narrow, quantConfig(4, 32))));
    expect(flatHqq).toBeLessThan(2 * restError(dequantizeGgml(leastSquares.quantize(narrow, quantConfig(4, 32)))));
    // the symmetric types have no zero to solve: the same values either way
    for (const config of [quantConfig(3, 16, { symmetric: true }), quantConfig(6, 16, { symmetric: true })]) {
      expect(Array.from(dequantizeGgml(hqq.quantize(weight, config)))).toEqual(Array.from(dequantizeGgml(leastSquares.quantize(weight, config))));
    }
    expect(ggmlPlugin.configure({ kquantSolver: 'hqq' }).quantize(weight, quantConfig(4, 32)).scale).toEqual(hqq.quantize(weight, quantConfig(4, 32)).scale);
  });

  it('has a squared error that falls along its ladder', () => {
    const errors = GGML_QUANTIZER_TYPES.filter((e) => e.type !== 'Q4_0' && e.type !== 'Q5_0').map(({ config }) => {
      const values = dequantizeGgml(quantizeGgml(weight, config));
      let sum = 0;
      for (let i = 0; i < values.length; i++) sum += (values[i]! - data[i]!) ** 2;
      return sum;
    });
    for (let i = 1; i < errors.length; i++) expect(errors[i]).toBeLessThan(errors[i - 1]!);
  });

  it("--imatrix: weighs each input channel by its mean squared activation (diag(H) / 2, llama.cpp's imatrix), lowering that weighted error", () => {
    // inputs whose channels differ in scale by 100x: X [N, columns], H = 2 XᵀX / N
    const random = seededNormal(9);
    const samples = 64;
    const scales = Float64Array.from({ length: columns }, (_, i) => (i % 7 === 0 ? 10 : 0.1 + (i % 5) * 0.3));
    const x = Float64Array.from({ length: samples * columns }, (_, k) => scales[k % columns]! * random());
    const h = new Float64Array(columns * columns);
    for (let n = 0; n < samples; n++) for (let i = 0; i < columns; i++) for (let j = 0; j < columns; j++) h[i * columns + j]! += (2 * x[n * columns + i]! * x[n * columns + j]!) / samples;
    const hessian = { columns, samples, data: h };
    const meanSquares = Float32Array.from({ length: columns }, (_, i) => {
      let sum = 0;
      for (let n = 0; n < samples; n++) sum += x[n * columns + i]! ** 2;
      return sum / samples;
    });
    const weighted = createGgmlQuantizer({ imatrix: true });
    expect(weighted.calibration).toBe('hessian');
    for (const type of ['Q3_K', 'Q4_K', 'Q6_K', 'Q4_0'] as const) {
      const config = GGML_QUANTIZER_TYPES.find((e) => e.type === type)!.config;
      const q = weighted.quantize(weight, config, { hessian });
      // the very quantization of the codec weighted by the inputs' mean squares (float32 sums may differ in the last bit)
      const oracle = quantizeGgml(weight, config, meanSquares);
      const a = dequantizeGgml(q);
      const b = dequantizeGgml(oracle);
      let differ = 0;
      for (let i = 0; i < a.length; i++) if (Math.abs(a[i]! - b[i]!) > 1e-6 * Math.abs(b[i]!) + 1e-9) differ++;
      expect(differ / a.length, type).toBeLessThan(0.01);
      // the output error it minimizes, sum_i w_i (x_i - xhat_i)^2, below the unweighted encoder's
      const plain = dequantizeGgml(quantizeGgml(weight, config));
      const error = (values: Float32Array) => {
        let sum = 0;
        for (let k = 0; k < values.length; k++) sum += meanSquares[k % columns]! * (values[k]! - data[k]!) ** 2;
        return sum;
      };
      expect(error(a), type).toBeLessThan(error(plain));
    }
    expect(() => weighted.quantize(weight, GGML_QUANTIZER_TYPES[3]!.config)).toThrow(/--imatrix.*--calib/);
  });
});

