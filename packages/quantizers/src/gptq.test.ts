import { InvalidDataError, InvalidOptionError, configName, quantConfig, type InputHessian, type QuantConfig, type QuantizedTensor } from '@layerquant/core';
import { describe, expect, it } from 'vitest';
import { createGptqQuantizer, gptqQuantizer, identityHessian, runGptq, gptqSettings, typescriptGptqKernel } from './gptq.js';
import { createWasmGptqKernel } from './gptq-kernel.js';
import { gptqBlockEnds, inverseCholeskyUpper, prepareHessian, solveGptqColumns, type GptqProblem } from './gptq-solver.js';
import { createRtnQuantizer, dequantizeTensor, unpackQuantizedCodes } from './quantizers.js';
import { runQuantizerConformance } from './testing/quantizer-conformance.js';
import { gptqPlugin } from './registry.js';
import { hessianWeightedError, randomInputs, randomMatrix } from './testing/random-matrix.js';

runQuantizerConformance(gptqPlugin);
runQuantizerConformance(createGptqQuantizer({ kernel: 'typescript' }));
runQuantizerConformance(createGptqQuantizer({ actOrder: true }));

// ---- float64 oracles, written out plainly (no lazy batches, no reversed factorization) ----

/** Gauss-Jordan inverse with partial pivoting, float64. */
function inverse64(a: Float64Array, n: number): Float64Array {
  const m = Float64Array.from(a);
  const inv = new Float64Array(n * n);
  for (let i = 0; i < n; i++) inv[i * n + i] = 1;
  for (let c = 0; c < n; c++) {
    let p = c;
    for (let r = c + 1; r < n; r++) if (Math.abs(m[r * n + c]!) > Math.abs(m[p * n + c]!)) p = r;
    for (let k = 0; k < n; k++) {
      [m[c * n + k], m[p * n + k]] = [m[p * n + k]!, m[c * n + k]!];
      [inv[c * n + k], inv[p * n + k]] = [inv[p * n + k]!, inv[c * n + k]!];
    }
    const d = m[c * n + c]!;
    for (let k = 0; k < n; k++) {
      m[c * n + k]! /= d;
      inv[c * n + k]! /= d;
    }
    for (let r = 0; r < n; r++) {
      if (r === c) continue;
      const f = m[r * n + c]!;
      for (let k = 0; k < n; k++) {
        m[r * n + k]! -= f * m[c * n + k]!;
        inv[r * n + k]! -= f * inv[c * n + k]!;
      }
    }
  }
  return inv;
}

/** The textbook upper Cholesky factor U (a = U^T U), float64. */
function upperCholesky64(a: Float64Array, n: number): Float64Array {
  const u = new Float64Array(n * n);
  for (let i = 0; i < n; i++) {
    let d = a[i * n + i]!;
    for (let k = 0; k < i; k++) d -= u[k * n + i]! ** 2;
    u[i * n + i] = Math.sqrt(d);
    for (let j = i + 1; j < n; j++) {
      let s = a[i * n + j]!;
      for (let k = 0; k < i; k++) s -= u[k * n + i]! * u[k * n + j]!;
      u[i * n + j] = s / u[i * n + i]!;
    }
  }
  return u;
}

function dampened(h: InputHessian, dampening: number): Float64Array {
  const n = h.columns;
  const a = Float64Array.from(h.data);
  let mean = 0;
  for (let i = 0; i < n; i++) mean += (a[i * n + i] === 0 ? 1 : a[i * n + i]!) / n;
  for (let i = 0; i < n; i++) a[i * n + i] = (a[i * n + i] === 0 ? 1 : a[i * n + i]!) + dampening * mean;
  return a;
}

/** GPTQ from the paper, column by column in float64: every later column updated after each one (no lazy batches). */
function gptqFloat64(
  weights: Float32Array,
  rows: number,
  h: InputHessian,
  config: QuantConfig,
  options: { dampening: number; actOrder: boolean; symmetric: boolean },
): { values: Float64Array; codes: Uint8Array } {
  const n = h.columns;
  const g = config.groupSize;
  const maxq = 2 ** config.bits - 1;
  const dead = Array.from({ length: n }, (_, c) => h.data[c * n + c] === 0);
  const w = Float64Array.from(weights, (v, i) => (dead[i % n] ? 0 : v));
  const diag = (c: number) => (dead[c] ? 1 : h.data[c * n + c]!);
  const order = Array.from({ length: n }, (_, i) => i);
  if (options.actOrder) order.sort((a, b) => diag(b) - diag(a) || a - b);
  const full = dampened(h, options.dampening);
  const permuted = new Float64Array(n * n);
  for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) permuted[i * n + j] = full[order[i]! * n + order[j]!]!;
  const u = upperCholesky64(inverse64(permuted, n), n);
  const range = (r: number, cols: number[]): [number, number] => {
    let lo = 0;
    let hi = 0;
    for (const c of cols) {
      lo = Math.min(lo, w[r * n + c]!);
      hi = Math.max(hi, w[r * n + c]!);
    }
    if (options.symmetric) {
      hi = Math.max(-lo, hi);
      lo = -hi;
    }
    return hi - lo < 1e-30 ? [-1, 1] : [lo, hi];
  };
  const groupCols = (k: number) => Array.from({ length: g }, (_, j) => k * g + j);
  const ranges = new Map<string, [number, number]>();
  if (options.actOrder) for (let r = 0; r < rows; r++) for (let k = 0; k < n / g; k++) ranges.set(`${r}:${k}`, range(r, groupCols(k)));
  const values = new Float64Array(rows * n);
  const codes = new Uint8Array(rows * n);
  for (let p = 0; p < n; p++) {
    const c = order[p]!;
    const k = Math.floor(c / g);
    for (let r = 0; r < rows; r++) {
      if (!options.actOrder && c % g === 0) ranges.set(`${r}:${k}`, range(r, groupCols(k)));
      const [lo, hi] = ranges.get(`${r}:${k}`)!;
      const step = (hi - lo) / maxq;
      const zero = options.symmetric ? (maxq + 1) / 2 : Math.round(-lo / step);
      const x = w[r * n + c]!;
      const q = Math.min(Math.max(Math.round(x / step) + zero, 0), maxq);
      const value = (q - zero) * step;
      codes[r * n + c] = q;
      values[r * n + c] = value;
      const e = (x - value) / u[p * n + p]!;
      for (let later = p + 1; later < n; later++) w[r * n + order[later]!]! -= e * u[p * n + later]!;
    }
  }
  return { values, codes };
}

describe('inverseCholeskyUpper', () => {
  it("is H^-1's upper Cholesky factor (against Gauss-Jordan inverse + textbook Cholesky, float64)", () => {
    // sizes across the blocks of 64 columns: one column, a partial block, whole blocks, whole blocks and a rest
    for (const [n, seed] of [[1, 1], [7, 2], [40, 3], [64, 4], [65, 5], [130, 6], [200, 7]] as const) {
      const { hessian } = randomInputs(n, 3 * n + 5, seed);
      const a = dampened(hessian, 0.01);
      const expected = upperCholesky64(inverse64(a, n), n);
      for (const kernel of ['typescript', 'wasm'] as const) {
        const got = Float64Array.from(a);
        expect(inverseCholeskyUpper(got, n, kernel)).toBe(true);
        let worst = 0;
        let largest = 0;
        for (let i = 0; i < n * n; i++) {
          worst = Math.max(worst, Math.abs(got[i]! - expected[i]!));
          largest = Math.max(largest, Math.abs(expected[i]!));
        }
        expect(worst, `n=${n} ${kernel}`).toBeLessThan(1e-10 * largest);
      }
    }
  });

  it('the WebAssembly SIMD kernel gives the TypeScript factor bit for bit (whole tiles, band edges, rests of 1-3 rows and columns)', () => {
    for (const [n, seed] of [[2, 11], [5, 12], [66, 13], [131, 14], [197, 15], [258, 16]] as const) {
      const { hessian } = randomInputs(n, 2 * n + 3, seed);
      const a = dampened(hessian, 0.01);
      const oracle = Float64Array.from(a);
      const fast = Float64Array.from(a);
      expect(inverseCholeskyUpper(oracle, n, 'typescript')).toBe(true);
      expect(inverseCholeskyUpper(fast, n, 'wasm')).toBe(true);
      let differing = 0;
      for (let i = 0; i < n * n; i++) if (!Object.is(fast[i], oracle[i])) differing++;
      expect(differing, `n=${n}`).toBe(0);
    }
  });

  it('reports a matrix that is not positive definite', () => {
    for (const kernel of ['typescript', 'wasm'] as const) {
      expect(inverseCholeskyUpper(Float64Array.from([1, 2, 2, 1]), 2, kernel)).toBe(false);
      expect(inverseCholeskyUpper(Float64Array.from([1, 0, 0, Number.NaN]), 2, kernel)).toBe(false);
    }
  });
});

describe('GPTQ column loop', () => {
  it("feeds each column's error back as the optimal-brain-surgeon update: the weights a column is quantized from are the least-squares optimum given the columns before", () => {
    const rows = 3;
    const n = 12;
    const { hessian } = randomInputs(n, 40, 11);
    const w = randomMatrix(rows, n, 12, 0.05).data;
    const prepared = prepareHessian(hessian, { dampening: 0.01, actOrder: false }, 'w');
    const weights = new Float32Array(rows * n);
    for (let c = 0; c < n; c++) for (let r = 0; r < rows; r++) weights[c * rows + r] = w[r * n + c]!;
    const problem: GptqProblem = {
      rows, columns: n, weights, inverse: prepared.inverse, groupSize: n,
      groupOf: new Int32Array(n), rangeAt: Uint8Array.from({ length: n }, (_, c) => (c === 0 ? 1 : 0)),
      maxq: new Float32Array(n).fill(3), blockEnds: gptqBlockEnds(n, 5, n, true), symmetric: false,
      low: new Float32Array(rows), high: new Float32Array(rows), codes: new Uint8Array(rows * n),
    };
    solveGptqColumns(problem);
    // the dequantized values the loop chose
    const step = (r: number) => Math.fround(1 / Math.fround(1 / Math.fround(Math.fround(problem.high[r]! - problem.low[r]!) / 3)));
    const zero = (r: number) => Math.round(-problem.low[r]! * Math.fround(1 / Math.fround(Math.fround(problem.high[r]! - problem.low[r]!) / 3)));
    const value = (r: number, c: number) => (problem.codes[c * rows + r]! - zero(r)) * step(r);
    const a = dampened(hessian, 0.01);
    for (let j = 1; j < n; j++) {
      // free columns F = j..n-1 given fixed columns 0..j-1 at their values: v_F = w_F + A_FF^-1 A_F,fixed (w - q)_fixed
      const free = n - j;
      const aff = new Float64Array(free * free);
      for (let x = 0; x < free; x++) for (let y = 0; y < free; y++) aff[x * free + y] = a[(j + x) * n + (j + y)]!;
      const inv = inverse64(aff, free);
      for (let r = 0; r < rows; r++) {
        const rhs = Array.from({ length: free }, (_, x) => {
          let s = 0;
          for (let f = 0; f < j; f++) s += a[(j + x) * n + f]! * (w[r * n + f]! - value(r, f));
          return s;
        });
        let optimum = w[r * n + j]!;
        for (let y = 0; y < free; y++) optimum += inv[y]! * rhs[y]!;
        // the first free column's optimum is what the loop quantized column j from (float32 arithmetic)
        expect(Math.abs(weights[j * rows + r]! - optimum), `column ${j}, row ${r}`).toBeLessThan(2e-6 * (Math.abs(optimum) + 0.05));
      }
    }
  });

  it('ends lazy batches before a group that would overrun them', () => {
    expect([...gptqBlockEnds(512, 128, 64, true)]).toEqual([128, 256, 384, 512]);
    expect([...gptqBlockEnds(384, 128, 96, true)]).toEqual([96, 192, 288, 384]);
    expect([...gptqBlockEnds(384, 128, 192, true)]).toEqual([128, 192, 320, 384]);
    expect([...gptqBlockEnds(300, 128, 100, false)]).toEqual([128, 256, 300]);
  });
});

describe('GPTQ against the float64 transcription of the paper', () => {
  const cases: { name: string; rows: number; n: number; config: QuantConfig; actOrder: boolean; symmetric: boolean; blockSize: number; dead?: number[] }[] = [
    { name: 'b4g8, batches of 16', rows: 6, n: 48, config: quantConfig(4, 8), actOrder: false, symmetric: false, blockSize: 16 },
    { name: 'b3g12 (groups straddle the batches of 16)', rows: 5, n: 48, config: quantConfig(3, 12), actOrder: false, symmetric: false, blockSize: 16, dead: [7, 30] },
    { name: 'b2g16, act-order', rows: 4, n: 48, config: quantConfig(2, 16), actOrder: true, symmetric: false, blockSize: 16 },
    { name: 'b8g24-sym', rows: 4, n: 48, config: quantConfig(8, 24, { symmetric: true }), actOrder: false, symmetric: true, blockSize: 128 },
    { name: 'b4g32-sym, act-order, batches of 7', rows: 3, n: 64, config: quantConfig(4, 32, { symmetric: true }), actOrder: true, symmetric: true, blockSize: 7, dead: [0] },
  ];
  for (const c of cases) {
    it(`${c.name}: same codes (bar rounding ties), same Hessian-weighted error`, () => {
      const { hessian } = randomInputs(c.n, 4 * c.n, c.n + c.rows, c.dead ?? []);
      const weight = randomMatrix(c.rows, c.n, 100 + c.n, 0.05, 2);
      const options = { dampening: 0.01, actOrder: c.actOrder, symmetric: c.symmetric };
      const expected = gptqFloat64(weight.data, c.rows, hessian, c.config, options);
      const settings = gptqSettings({ dampening: 0.01, actOrder: c.actOrder, blockSize: c.blockSize });
      const prepared = prepareHessian(hessian, settings, weight.name);
      const result = runGptq(weight, c.config, prepared, settings, typescriptGptqKernel);
      let same = 0;
      for (let i = 0; i < result.codes.length; i++) if (result.codes[i] === expected.codes[i]) same++;
      expect(same / result.codes.length).toBeGreaterThan(0.98);
      const q = createGptqQuantizer({ ...settings, kernel: 'typescript' }).quantize(weight, c.config, { hessian });
      const values = createGptqQuantizer().dequantize(q);
      const ours = hessianWeightedError(weight.data, values, hessian);
      const theirs = hessianWeightedError(weight.data, expected.values, hessian);
      expect(Math.abs(ours - theirs) / theirs).toBeLessThan(0.01);
      for (const d of c.dead ?? []) for (let r = 0; r < c.rows; r++) expect(values[r * c.n + d]).toBe(0);
      expect(q.report).toEqual({ deadColumns: (c.dead ?? []).length, dampening: 0.01, dampeningRetries: 0 });
    });
  }

  it('has a lower Hessian-weighted error than RTN on the same grid, and lower with act-order on unequal inputs', () => {
    const { hessian } = randomInputs(128, 400, 5);
    const weight = randomMatrix(16, 128, 6, 0.05, 4);
    const config = quantConfig(3, 32);
    const rtn = createRtnQuantizer();
    const error = (values: Float32Array) => hessianWeightedError(weight.data, values, hessian);
    const plain = error(gptqQuantizer.dequantize(gptqQuantizer.quantize(weight, config, { hessian })));
    const rounding = error(rtn.dequantize(rtn.quantize(weight, config)));
    expect(plain).toBeLessThan(0.7 * rounding);
  });
});

describe('the gptq quantizer', () => {
  const weight = randomMatrix(8, 64, 3, 0.05);
  const config = quantConfig(4, 32);

  it('needs a Hessian of the right size (typed errors naming the tensor and the flag)', () => {
    expect(() => gptqQuantizer.quantize(weight, config)).toThrow(InvalidOptionError);
    expect(() => gptqQuantizer.quantize(weight, config)).toThrow(/--calib.*random\.3\.weight|random\.3\.weight.*--calib/);
    expect(() => gptqQuantizer.quantize(weight, config, { hessian: randomInputs(32, 50, 1).hessian })).toThrow(/64 input columns/);
    expect(() => gptqQuantizer.quantize(weight, quantConfig(4, 32, { axis: 0 }), { hessian: randomInputs(64, 50, 1).hessian })).toThrow(/axis 1/);
  });

  it('quantizes the embedding units (no layer input) with the identity Hessian: round-to-nearest, RTN\'s codes at integer zeros', () => {
    const rtn = createRtnQuantizer();
    for (const name of ['model.embed_tokens.weight', 'lm_head.weight']) {
      const unit = { ...randomMatrix(16, 128, 5, 0.05), name };
      for (const c of [quantConfig(4, 32, { roundZero: true }), quantConfig(2, 64, { roundZero: true }), quantConfig(8, 128, { roundZero: true })]) {
        const ours = gptqQuantizer.quantize(unit, c) as QuantizedTensor;
        const reference = rtn.quantize(unit, c) as QuantizedTensor;
        const [a, b] = [dequantizeTensor(ours), dequantizeTensor(reference)];
        let worst = 0;
        for (let i = 0; i < a.length; i++) worst = Math.max(worst, Math.abs(a[i]! - b[i]!));
        expect(worst, `${name} ${c.bits}-bit`).toBeLessThan(1e-6);
      }
    }
    // A linear matrix without its Hessian is still refused.
    expect(() => gptqQuantizer.quantize({ ...weight, name: 'model.layers.0.mlp.up_proj.weight' }, config)).toThrow(/--calib/);
  });

  it('an embedding unit without a Hessian takes the diagonal pass: bit for bit the full pass on an explicit identity (act-order, symmetric, 2-8 bits)', () => {
    const unit = { ...randomMatrix(24, 256, 9, 0.05), name: 'model.embed_tokens.weight' };
    const configs = [quantConfig(4, 32, { roundZero: true }), quantConfig(2, 64, { roundZero: true }), quantConfig(8, 128, { roundZero: true }), quantConfig(4, 32, { symmetric: true, roundZero: true })];
    for (const quantizer of [gptqQuantizer, createGptqQuantizer({ actOrder: true }), createGptqQuantizer({ kernel: 'typescript', dampening: 0.1 })]) {
      for (const c of configs) {
        const fast = quantizer.quantize(unit, c) as QuantizedTensor;
        // the identity given as the context's Hessian goes through the factorization and the feedback loop
        const full = quantizer.quantize(unit, c, { hessian: identityHessian(256) }) as QuantizedTensor;
        expect(Array.from(fast.packed), configName(c)).toEqual(Array.from(full.packed));
        expect(Array.from(fast.scale)).toEqual(Array.from(full.scale));
        expect(Array.from(fast.zero)).toEqual(Array.from(full.zero));
        expect(fast.report).toEqual(full.report);
      }
    }
  });

  it('refuses a Hessian holding NaN', () => {
    const { hessian } = randomInputs(64, 80, 2);
    const data = Float64Array.from(hessian.data);
    data[5] = Number.NaN;
    expect(() => gptqQuantizer.quantize(weight, config, { hessian: { ...hessian, data } })).toThrow(InvalidDataError);
  });

  it('retries a Hessian that is not positive definite with more dampening, reports it, and returns finite weights', () => {
    const { hessian } = randomInputs(64, 80, 2);
    const data = Float64Array.from(hessian.data);
    // a strongly negative direction between columns 3 and 4: eigenvalue of about -mean(diag)
    const mean = Array.from({ length: 64 }, (_, i) => data[i * 64 + i]!).reduce((a, b) => a + b) / 64;
    data[3 * 64 + 3] = mean;
    data[4 * 64 + 4] = mean;
    data[3 * 64 + 4] = data[4 * 64 + 3] = 2 * mean;
    const q = gptqQuantizer.quantize(weight, config, { hessian: { ...hessian, data } });
    expect(q.report!.dampeningRetries).toBeGreaterThan(0);
    expect(q.report!.dampening).toBe(0.01 * 2 ** q.report!.dampeningRetries!);
    expect(gptqQuantizer.dequantize(q).every(Number.isFinite)).toBe(true);
  });

  it('zeroes dead input columns and keeps integer zeros in range (affine, exportable)', () => {
    const { hessian } = randomInputs(64, 80, 4, [2, 40]);
    const q = createGptqQuantizer({ actOrder: true }).quantize(weight, config, { hessian });
    const values = gptqQuantizer.dequantize(q);
    for (let r = 0; r < 8; r++) {
      expect(values[r * 64 + 2]).toBe(0);
      expect(values[r * 64 + 40]).toBe(0);
    }
    for (const z of q.zero) {
      expect(Number.isInteger(z)).toBe(true);
      expect(z).toBeGreaterThanOrEqual(0);
      expect(z).toBeLessThanOrEqual(15);
    }
    expect(q.report!.deadColumns).toBe(2);
    expect(unpackQuantizedCodes(q).length).toBe(8 * 64);
    // GPTQ's zeros are integers anyway: an integer-zero config (b4g32-int) gives the same codes, scales and zeros
    const integer = createGptqQuantizer({ actOrder: true }).quantize(weight, quantConfig(4, 32, { roundZero: true }), { hessian });
    expect(integer.packed).toEqual(q.packed);
    expect(integer.scale).toEqual(q.scale);
    expect(integer.zero).toEqual(q.zero);
  });

  it('validates its settings', () => {
    expect(() => createGptqQuantizer({ dampening: 0 })).toThrow(/dampening/);
    expect(() => createGptqQuantizer({ blockSize: 0 })).toThrow(/blockSize/);
  });
});

describe('GPTQ WebAssembly SIMD kernel', () => {
  const wasm = createWasmGptqKernel();
  it.skipIf(!wasm)('gives codes and ranges bit-identical to the TypeScript kernel', () => {
    for (const [rows, n, bits, g, actOrder, symmetric, blockSize] of [
      [8, 64, 4, 16, false, false, 128], [12, 96, 3, 32, true, false, 32], [4, 80, 2, 20, false, true, 16], [16, 128, 8, 128, false, false, 48], [8, 64, 4, 32, true, true, 16], [20, 96, 3, 32, false, false, 40], [36, 100, 4, 20, false, false, 15],
    ] as const) {
      const { hessian } = randomInputs(n, 2 * n, rows + n, [1]);
      const weight = randomMatrix(rows, n, rows * n, 0.05, 3);
      const settings = gptqSettings({ actOrder, blockSize });
      const prepared = prepareHessian(hessian, settings, weight.name);
      const config = quantConfig(bits, g, { symmetric });
      const a = runGptq(weight, config, prepared, settings, typescriptGptqKernel);
      const b = runGptq(weight, config, prepared, settings, wasm!);
      expect(b.codes).toEqual(a.codes);
      expect(b.low).toEqual(a.low);
      expect(b.high).toEqual(a.high);
    }
  });
});
