import { InvalidOptionError } from '@layerquant/core';
import { roundHalfEven } from './rounding.js';

const fround = Math.fround;

/** Options of the HQQ proximal solver. Defaults are upstream mobiusml/hqq's (`optimize_weights_proximal_legacy`). */
export interface ProximalOptions {
  /** p of the l_p shrinkage, in (0, 1]. Upstream: 0.7. */
  readonly lpNorm: number;
  /** Initial beta. Upstream: 10. */
  readonly beta: number;
  /** beta is multiplied by kappa after every zero update: 1 = off (upstream), 1.01 in the authors' fork. */
  readonly kappa: number;
  /** Most iterations; the solver stops early when the error stops falling. Upstream: 20. */
  readonly iterations: number;
  /**
   * Round the solved zero points to integers (within the code range) before the final codes: an integer zero a
   * format stores as it is (a `-int` config). Upstream HQQ's round_zero rounds only the initial zero, which the solver
   * then moves off the integers; absent or false: as upstream.
   */
  readonly integerZero?: boolean;
}

export const UPSTREAM_PROXIMAL_OPTIONS: ProximalOptions = Object.freeze({ lpNorm: 0.7, beta: 10, kappa: 1, iterations: 20 });

/**
 * The solver a config runs: with an integer zero (`roundZero`, a `-int` config) the solved zeros are rounded to
 * integers before the codes (`integerZero`). The one mapping every caller of a kernel uses (quantizer, worker pool).
 */
export function solverForConfig(solver: ProximalOptions | null, config: { readonly roundZero: boolean }): ProximalOptions | null {
  return solver && config.roundZero && !solver.integerZero ? Object.freeze({ ...solver, integerZero: true }) : solver;
}

/** Rounds zero points to integers in [0, maxV] (HQQ's solved zeros for an integer-zero config). */
export function roundZerosToIntegers(zero: Float32Array, maxV: number): void {
  for (let k = 0; k < zero.length; k++) {
    const z = roundHalfEven(zero[k]!);
    zero[k] = z < 0 ? 0 : z > maxV ? maxV : z;
  }
}

/** Validated, frozen solver options. */
export function proximalOptions(options: Partial<ProximalOptions> = {}): ProximalOptions {
  const merged = { ...UPSTREAM_PROXIMAL_OPTIONS, ...options };
  if (!(merged.lpNorm > 0 && merged.lpNorm <= 1)) throw new InvalidOptionError('lpNorm', `${merged.lpNorm} must be in (0, 1]`);
  if (!(merged.beta > 0)) throw new InvalidOptionError('beta', `${merged.beta} must be > 0`);
  if (!(merged.kappa >= 1)) throw new InvalidOptionError('kappa', `${merged.kappa} must be >= 1 (1 = off)`);
  if (!Number.isInteger(merged.iterations) || merged.iterations < 1) {
    throw new InvalidOptionError('iterations', `${merged.iterations} must be a positive integer`);
  }
  return Object.freeze(merged);
}

/**
 * Below this |W - Wr| the l_p shrinkage `relu(|x| - |x|^(p-1)/beta)` is exactly 0 in fp32: its root is
 * `(1/beta)^(1/(2-p))` and 10% below it the bracket is negative by far more than rounding. Lets both kernels skip
 * the power (nearly every element: errors are at most half a quantization step).
 */
export function shrinkThreshold(inverseBeta: number, lpNorm: number): number {
  return 0.9 * inverseBeta ** (1 / (2 - lpNorm));
}

/**
 * One element of the shrinkage step: `W_e = sign(x) * relu(|x| - (1/beta) * |x|^(p-1))` with x = W - Wr, in fp32,
 * then the term of the zero update `Wq - (W - W_e) * s`. Shared by the TypeScript solver and the WebAssembly kernel.
 */
export function shrunkZeroTerm(w: number, q: number, x: number, s: number, inverseBeta: number, exponent: number): number {
  const a = Math.abs(x);
  let e = fround(a - fround(inverseBeta * fround(Math.pow(a, exponent))));
  if (e < 0) e = 0;
  if (x < 0) e = -e;
  return fround(q - fround(fround(w - e) * s));
}

/**
 * One iteration of HQQ's proximal solver over all groups (`optimize_weights_proximal_legacy_step`), fp32:
 * `Wq = clamp(round(W*s + z)); Wr = (Wq - z)/s; W_e = shrink_lp(W - Wr); z = mean_group(Wq - (W - W_e)*s)`.
 * Updates `zero` in place and returns sum |W - Wr| (with the zero before the update). Sums run in float64 over four
 * lanes (element j into lane j % 4), combined as (l0 + l2) + (l1 + l3): the WebAssembly kernel sums the same way.
 */
export function proximalIteration(
  grouped: Float32Array,
  groupSize: number,
  maxV: number,
  scale: Float32Array,
  zero: Float32Array,
  inverseBeta: number,
  exponent: number,
  threshold: number,
): number {
  const sums = new Float64Array(4);
  const errors = new Float64Array(4);
  for (let k = 0, base = 0; k < scale.length; k++, base += groupSize) {
    const s = scale[k]!;
    const z = zero[k]!;
    sums.fill(0);
    for (let j = 0; j < groupSize; j++) {
      const w = grouped[base + j]!;
      const t = fround(w * s);
      let q = roundHalfEven(fround(t + z));
      q = q < 0 ? 0 : q > maxV ? maxV : q;
      const r = fround(fround(q - z) / s);
      const x = fround(w - r);
      const a = Math.abs(x);
      errors[j & 3]! += a;
      // W_e = 0 below the threshold, so (W - W_e)*s is t
      sums[j & 3]! += a > threshold ? shrunkZeroTerm(w, q, x, s, inverseBeta, exponent) : fround(q - t);
    }
    zero[k] = fround(fround(sums[0]! + sums[2]! + (sums[1]! + sums[3]!)) / groupSize);
  }
  return errors[0]! + errors[2]! + (errors[1]! + errors[3]!);
}

/** Runs one proximal iteration on some prepared state; returns sum |W - Wr| (see proximalIteration). */
export type ProximalStep = (inverseBeta: number, exponent: number, threshold: number) => number;

/**
 * HQQ's proximal solver for the zero point (scale never updated), with upstream's early stop: each iteration
 * measures mean |W - Wr| before its zero update; when it is not below the best so far the loop stops, keeping the
 * zero that iteration computed. `step` runs one iteration (TypeScript or WebAssembly) over `count` weights.
 * Returns the number of iterations run.
 */
export function runProximalSolver(step: ProximalStep, count: number, options: ProximalOptions): number {
  const exponent = fround(options.lpNorm - 1);
  let beta = options.beta;
  let best = Number.POSITIVE_INFINITY;
  for (let i = 0; i < options.iterations; i++) {
    const inverseBeta = fround(1 / beta);
    const sum = step(inverseBeta, exponent, shrinkThreshold(inverseBeta, options.lpNorm));
    beta *= options.kappa;
    // torch compares fp32 means
    const error = fround(sum / count);
    if (error < best) best = error;
    else return i + 1;
  }
  return options.iterations;
}

/** The solver in TypeScript on group-major weights; updates `zero` in place; returns the iterations run. */
export function optimizeZeroProximal(
  grouped: Float32Array,
  groupSize: number,
  bits: number,
  scale: Float32Array,
  zero: Float32Array,
  options: ProximalOptions = UPSTREAM_PROXIMAL_OPTIONS,
): number {
  const maxV = 2 ** bits - 1;
  return runProximalSolver(
    (inverseBeta, exponent, threshold) => proximalIteration(grouped, groupSize, maxV, scale, zero, inverseBeta, exponent, threshold),
    grouped.length,
    options,
  );
}
