import { PAPER_CONFIGS, configName, quantConfig } from '@layerquant/core';
import { describe, expect, it } from 'vitest';
import { asymmetricMinMaxInit } from './asymmetric-init.js';
import { groupLayout, groupedValues } from './grouping.js';
import { createWasmKernel, typescriptKernel, wasmKernelAvailable } from './quant-kernel.js';
import { UPSTREAM_PROXIMAL_OPTIONS, proximalIteration, proximalOptions, runProximalSolver, type ProximalOptions } from './hqq-proximal.js';
import { createHqqQuantizer, createRtnQuantizer, hqqQuantizer, rtnQuantizer, squaredError } from './quantizers.js';
import { runQuantizerConformance } from './testing/quantizer-conformance.js';
import { hqqPlugin, rtnPlugin } from './registry.js';
import { randomMatrix } from './testing/random-matrix.js';

// The registry's plug-ins (rtn, hqq with their descriptions and options) and the kernel variants.
runQuantizerConformance(rtnPlugin);
runQuantizerConformance(hqqPlugin);
runQuantizerConformance(createHqqQuantizer({ kernel: 'typescript' }));
runQuantizerConformance(createRtnQuantizer({ kernel: 'typescript' }));

/**
 * Float64 transcription of upstream's optimize_weights_proximal_legacy (no fp32 emulation, no shortcut): an
 * independent oracle for the solver's result up to rounding.
 */
function hqqFloat64(w: Float32Array, g: number, bits: number, options: ProximalOptions): Float64Array {
  const groups = w.length / g;
  const maxV = 2 ** bits - 1;
  const scale = new Float64Array(groups);
  let zero = new Float64Array(groups);
  for (let k = 0; k < groups; k++) {
    const values = Array.from(w.subarray(k * g, k * g + g));
    const min = Math.min(...values);
    const max = Math.max(...values);
    scale[k] = Math.min(max - min <= 1e-4 ? 1 : maxV / (max - min), 2e4);
    zero[k] = -min * scale[k]!;
  }
  const quantize = (x: number) => Math.min(maxV, Math.max(0, Math.round(x)));
  let beta = options.beta;
  let best = Infinity;
  for (let i = 0; i < options.iterations; i++) {
    let error = 0;
    const next = new Float64Array(groups);
    for (let k = 0; k < groups; k++) {
      let sum = 0;
      for (let j = 0; j < g; j++) {
        const x = w[k * g + j]!;
        const q = quantize(x * scale[k]! + zero[k]!);
        const e = x - (q - zero[k]!) / scale[k]!;
        error += Math.abs(e);
        const shrunk = Math.sign(e) * Math.max(Math.abs(e) - Math.abs(e) ** (options.lpNorm - 1) / beta, 0);
        sum += q - (x - shrunk) * scale[k]!;
      }
      next[k] = sum / g;
    }
    zero = next;
    beta *= options.kappa;
    if (error / w.length < best) best = error / w.length;
    else break;
  }
  const out = new Float64Array(w.length);
  for (let k = 0; k < groups; k++) {
    for (let j = 0; j < g; j++) out[k * g + j] = (quantize(w[k * g + j]! * scale[k]! + zero[k]!) - zero[k]!) / scale[k]!;
  }
  return out;
}

function hqqError(quantizer = hqqQuantizer, weight = randomMatrix(32, 256, 5, 0.02, 8), bits = 4, g = 64): number {
  return squaredError(quantizer.dequantize(quantizer.quantize(weight, quantConfig(bits, g))), weight.data);
}

describe('HQQ proximal solver', () => {
  it('stops as upstream does: at the first iteration whose error is not below the best, after its zero update', () => {
    const errors = [5, 4, 3, 3, 2];
    const calls: number[] = [];
    const iterations = runProximalSolver(
      (inverseBeta) => {
        calls.push(inverseBeta);
        return errors[calls.length - 1]! * 10;
      },
      10,
      proximalOptions({ kappa: 1.01 }),
    );
    expect(iterations).toBe(4);
    // beta = 10, 10.1, 10.201, ... and the fp32 1/beta the shrinkage uses
    expect(calls).toEqual([10, 10.1, 10.201, 10.30301].map((beta) => Math.fround(1 / beta)));
    expect(runProximalSolver(() => 1, 10, UPSTREAM_PROXIMAL_OPTIONS)).toBe(2);
    let falling = 100;
    expect(runProximalSolver(() => falling--, 10, UPSTREAM_PROXIMAL_OPTIONS)).toBe(20);
  });

  it('agrees with a float64 transcription of upstream HQQ to within fp32 rounding', () => {
    for (const [bits, g] of [[2, 64], [3, 32], [4, 64], [8, 128]] as const) {
      const weight = randomMatrix(16, 256, 100 + bits, 0.02, 4);
      const ours = squaredError(hqqQuantizer.dequantize(hqqQuantizer.quantize(weight, quantConfig(bits, g))), weight.data);
      const reference = hqqFloat64(weight.data, g, bits, UPSTREAM_PROXIMAL_OPTIONS);
      let error = 0;
      for (let i = 0; i < reference.length; i++) error += (reference[i]! - weight.data[i]!) ** 2;
      expect(Math.abs(ours - error) / error, `b${bits}g${g}`).toBeLessThan(1e-3);
    }
  });

  it('lowers the squared error of RTN on random matrices for every paper config', () => {
    const weight = randomMatrix(32, 256, 9, 0.02, 8);
    for (const config of PAPER_CONFIGS) {
      const rtn = squaredError(rtnQuantizer.dequantize(rtnQuantizer.quantize(weight, config)), weight.data);
      const hqq = squaredError(hqqQuantizer.dequantize(hqqQuantizer.quantize(weight, config)), weight.data);
      expect(hqq, configName(config)).toBeLessThan(rtn);
    }
  });

  it('skips the power only where the shrinkage is exactly zero (same zeros with the shortcut off)', () => {
    // large weights so |W - Wr| crosses the threshold and the shrinkage is live
    const weight = randomMatrix(8, 256, 21, 2, 20);
    for (const bits of [2, 4]) {
      const g = 64;
      const groups = weight.data.length / g;
      const run = (threshold: (t: number) => number) => {
        const scale = new Float32Array(groups);
        const zero = new Float32Array(groups);
        asymmetricMinMaxInit(weight.data, g, bits, false, scale, zero);
        const errors: number[] = [];
        runProximalSolver(
          (inverseBeta, exponent, t) => {
            const e = proximalIteration(weight.data, g, 2 ** bits - 1, scale, zero, inverseBeta, exponent, threshold(t));
            errors.push(e);
            return e;
          },
          weight.data.length,
          UPSTREAM_PROXIMAL_OPTIONS,
        );
        return { zero, errors };
      };
      const shortcut = run((t) => t);
      const full = run(() => -1);
      expect(shortcut.zero).toEqual(full.zero);
      expect(shortcut.errors).toEqual(full.errors);
      // and the shrinkage did act: it moved the zeros away from plain mean(Wq - W*s)
      const off = run(() => Infinity);
      expect(off.zero).not.toEqual(full.zero);
    }
  });

  it("applies the fork's kappa: on the same matrix kappa 1.01 and 1.0 differ as the float64 solver says", () => {
    // The shrinkage |e|^(p-1)/beta only leaves a residual (and beta only matters) where the errors e are large
    // against it: at weight scale 0.02 every residual shrinks to 0 for any beta, so kappa cannot change anything.
    // Weights of scale 2 at 2 bits in groups of 128 have errors near 0.5, where beta's growth moves the zeros.
    const weight = randomMatrix(32, 256, 13, 2, 8);
    const fork = createHqqQuantizer({ solver: { kappa: 1.01 } });
    expect(fork.solver.kappa).toBe(1.01);
    const oracle = (kappa: number) => {
      const reference = hqqFloat64(weight.data, 128, 2, proximalOptions({ kappa }));
      let error = 0;
      for (let i = 0; i < reference.length; i++) error += (reference[i]! - weight.data[i]!) ** 2;
      return error;
    };
    const [oracleUpstream, oracleFork] = [oracle(1), oracle(1.01)];
    const upstream = hqqError(hqqQuantizer, weight, 2, 128);
    const withKappa = hqqError(fork, weight, 2, 128);
    // The oracle's two errors differ by far more than the fp32 tolerance ours is held to (1e-3 relative) ...
    expect(Math.abs(oracleFork - oracleUpstream) / oracleUpstream).toBeGreaterThan(5e-3);
    // ... and ours follows each, so the difference has the oracle's sign and size.
    expect(Math.abs(upstream - oracleUpstream) / oracleUpstream).toBeLessThan(1e-3);
    expect(Math.abs(withKappa - oracleFork) / oracleFork).toBeLessThan(1e-3);
    expect(Math.sign(withKappa - upstream)).toBe(Math.sign(oracleFork - oracleUpstream));
  });

  it('offers the fork variants: axis 0 and a rounded zero', () => {
    const weight = randomMatrix(32, 256, 13, 0.02, 8);
    const axis0 = hqqQuantizer.quantize(weight, quantConfig(4, 64, { axis: 0 }));
    expect(axis0.scale.length).toBe(128);
    expect(squaredError(hqqQuantizer.dequantize(axis0), weight.data)).toBeLessThan(
      squaredError(rtnQuantizer.dequantize(rtnQuantizer.quantize(weight, quantConfig(4, 64, { axis: 0 }))), weight.data),
    );
    const rounded = rtnQuantizer.quantize(weight, quantConfig(4, 64, { roundZero: true }));
    expect(Array.from(rounded.zero).every(Number.isInteger)).toBe(true);
    expect(() => proximalOptions({ lpNorm: 1.5 })).toThrow(/option "lpNorm"/);
    expect(() => proximalOptions({ iterations: 0 })).toThrow(/option "iterations"/);
  });
});

describe.skipIf(!wasmKernelAvailable())('WebAssembly SIMD kernel', () => {
  it('gives bit-identical scales, zeros, codes and dequantized values to the TypeScript kernel', () => {
    const wasm = createWasmKernel()!;
    const cases: { bits: number; g: number; seed: number; scale: number; solver?: Partial<ProximalOptions> | null; roundZero?: boolean; flat?: boolean }[] = [
      { bits: 2, g: 64, seed: 1, scale: 0.02 },
      { bits: 3, g: 32, seed: 2, scale: 0.02 },
      { bits: 4, g: 64, seed: 3, scale: 0.02 },
      { bits: 4, g: 128, seed: 4, scale: 0.02, solver: { kappa: 1.01 } },
      { bits: 8, g: 128, seed: 5, scale: 0.02 },
      { bits: 1, g: 32, seed: 6, scale: 0.02 },
      { bits: 2, g: 64, seed: 7, scale: 3, roundZero: true },
      { bits: 4, g: 4, seed: 8, scale: 1 },
      { bits: 4, g: 64, seed: 9, scale: 0.02, solver: null },
      { bits: 3, g: 32, seed: 10, scale: 0.02, solver: null, roundZero: true },
      // flat and nearly flat groups: s = 1 and the 1e-4 range test
      { bits: 4, g: 32, seed: 11, scale: 0.00002, flat: true },
    ];
    for (const c of cases) {
      const weight = randomMatrix(24, 128, c.seed, c.scale, c.flat ? 0 : 12);
      if (c.flat) weight.data.fill(0.5, 0, 64);
      const groups = weight.data.length / c.g;
      const solver = c.solver === null ? null : proximalOptions(c.solver);
      const results = [typescriptKernel, wasm].map((kernel) => {
        const scale = new Float32Array(groups);
        const zero = new Float32Array(groups);
        const codes = new Uint8Array(weight.data.length);
        const iterations = kernel.quantize(weight.data, c.g, c.bits, c.roundZero ?? false, solver, scale, zero, codes);
        const values = new Float32Array(weight.data.length);
        kernel.dequantize(codes, c.g, scale, zero, values);
        return { iterations, scale, zero, codes, values };
      });
      const label = JSON.stringify(c);
      expect(results[1]!.iterations, label).toBe(results[0]!.iterations);
      expect(results[1]!.scale, label).toEqual(results[0]!.scale);
      expect(results[1]!.zero, label).toEqual(results[0]!.zero);
      expect(results[1]!.codes, label).toEqual(results[0]!.codes);
      expect(results[1]!.values, label).toEqual(results[0]!.values);
    }
  });

  it('grows its memory for a larger matrix after a small one', () => {
    const wasm = createWasmKernel()!;
    for (const rows of [2, 600]) {
      const weight = randomMatrix(rows, 256, rows, 0.02, 3);
      const groups = weight.data.length / 64;
      const run = (kernel: typeof wasm) => {
        const scale = new Float32Array(groups);
        const zero = new Float32Array(groups);
        const codes = new Uint8Array(weight.data.length);
        kernel.quantize(weight.data, 64, 4, false, UPSTREAM_PROXIMAL_OPTIONS, scale, zero, codes);
        return codes;
      };
      expect(run(wasm)).toEqual(run(typescriptKernel));
    }
  });
});

describe('HQQ with an integer zero (a -int config)', () => {
  it('stores integer zeros within the code range, solved then rounded; the TypeScript and WebAssembly kernels agree bit for bit; the error stays near the fractional zero\'s', () => {
    const weight = randomMatrix(48, 256, 21, 0.02, 5);
    const config = quantConfig(4, 64, { roundZero: true });
    const ts = createHqqQuantizer({ kernel: 'typescript' }).quantize(weight, config);
    const fast = hqqQuantizer.quantize(weight, config);
    expect(Array.from(fast.zero)).toEqual(Array.from(ts.zero));
    expect(Array.from(fast.packed)).toEqual(Array.from(ts.packed));
    for (const z of ts.zero) expect(Number.isInteger(z) && z >= 0 && z <= 15).toBe(true);
    // upstream HQQ rounds only the initial zero: the solver moves it off the integers (the same codes are not expected)
    const upstream = createHqqQuantizer({ kernel: 'typescript' });
    const kernelZeros = new Float32Array(weight.data.length / 64);
    typescriptKernel.quantize(groupedValues(weight.data, groupLayout(weight.name, [48, 256], config)), 64, 4, true, upstream.solver, new Float32Array(kernelZeros.length), kernelZeros, new Uint8Array(weight.data.length));
    expect(kernelZeros.some((z) => !Number.isInteger(z))).toBe(true);
    // Rounding a zero moves each group's grid by at most half a step: the error grows, but by far less than twice.
    const integer = squaredError(hqqQuantizer.dequantize(ts), weight.data);
    const fractional = squaredError(hqqQuantizer.dequantize(hqqQuantizer.quantize(weight, quantConfig(4, 64))), weight.data);
    expect(integer).toBeGreaterThan(fractional);
    expect(integer).toBeLessThan(2 * fractional);
  });
});
