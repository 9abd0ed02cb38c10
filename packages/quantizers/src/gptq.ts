import {
  InvalidOptionError,
  isEmbeddingUnit,
  unitOfTensorName,
  ShapeMismatchError,
  type InputHessian,
  type QuantConfig,
  type QuantizeContext,
  type QuantizedTensor,
  type Quantizer,
  type WeightTensor,
} from '@layerquant/core';
import { PACKING, packCodes } from './bit-packing.js';
import { groupLayout, matrixShape } from './grouping.js';
import { createWasmGptqKernel } from './gptq-kernel.js';
import { roundHalfEven } from './rounding.js';
import {
  gptqBlockEnds,
  gptqGrid,
  prepareHessian,
  prepareHessianOn,
  settleRange,
  solveGptqColumns,
  type GptqProblem,
  type PreparedHessian,
} from './gptq-solver.js';
import type { CholeskyThreads } from './cholesky-kernel.js';
import type { KernelChoice } from './quant-kernel.js';
import { dequantizeTensor } from './quantizers.js';

export interface GptqSettings {
  /** Added to H's diagonal, as a fraction of its mean (default 0.01, GPTQ's percdamp). */
  readonly dampening: number;
  /** Quantize columns by descending H diagonal, with every group's range fixed up front on the original order. */
  readonly actOrder: boolean;
  /** Columns per lazy batch update (default 128). */
  readonly blockSize: number;
}

export const GPTQ_DEFAULTS: GptqSettings = Object.freeze({ dampening: 0.01, actOrder: false, blockSize: 128 });

export interface GptqOptions extends Partial<GptqSettings> {
  /** `auto` (default): WebAssembly SIMD where available and the row count is a multiple of 4, else TypeScript. */
  readonly kernel?: KernelChoice;
}

/** Runs GptqProblems: TypeScript (the oracle) or WebAssembly SIMD (bit-identical). */
export interface GptqKernel {
  readonly id: 'typescript' | 'wasm-simd';
  supports(rows: number): boolean;
  solve(problem: GptqProblem): void;
}

export const typescriptGptqKernel: GptqKernel = Object.freeze({ id: 'typescript' as const, supports: () => true, solve: solveGptqColumns });

export function gptqSettings(options: Partial<GptqSettings> = {}): GptqSettings {
  const settings = { ...GPTQ_DEFAULTS, ...Object.fromEntries(Object.entries(options).filter(([, v]) => v !== undefined)) } as GptqSettings;
  if (!(settings.dampening > 0) || !Number.isFinite(settings.dampening)) throw new InvalidOptionError('dampening', `${settings.dampening} must be a positive number (a fraction of the Hessian's mean diagonal, e.g. 0.01)`);
  if (!Number.isInteger(settings.blockSize) || settings.blockSize < 1) throw new InvalidOptionError('blockSize', `${settings.blockSize} must be a positive integer (e.g. 128)`);
  return Object.freeze(settings);
}

/** What one GPTQ pass over a matrix gives: row-major codes and each group's range (in the row-major group order). */
export interface GptqResult {
  readonly rows: number;
  readonly columns: number;
  /** Row-major [rows, columns] codes, original column order. */
  readonly codes: Uint8Array;
  /** Per group (row-major over [rows, columns / groupSize]): the range its grid was made from. */
  readonly low: Float32Array;
  readonly high: Float32Array;
  /**
   * With `losses`: per original column, GPTQ's loss of quantizing it, `sum over rows of ((w - q) / U[c, c])^2` with w
   * the column's weights when it was quantized (the paper's Losses, summed over rows; BAQ's sensitivities).
   */
  readonly losses?: Float64Array;
}

/**
 * The Hessian a calibrated quantizer was given, checked against the weight. The embedding units (embed_tokens, a
 * lookup with no layer input, and lm_head, whose input the layer pass does not collect) get the identity: GPTQ with
 * a diagonal Hessian compensates nothing across columns, so it is round-to-nearest on GPTQ's grid (its groups'
 * ranges, its integer or symmetric zero), and a format can still allocate them.
 */
export function requireHessian(quantizerId: string, weight: WeightTensor, context: QuantizeContext | undefined): InputHessian {
  const hessian = context?.hessian;
  const [, columns] = matrixShape(weight);
  if (takesIdentityHessian(weight, context)) return identityHessian(columns);
  if (!hessian) {
    throw new InvalidOptionError(
      'calib',
      `quantizer "${quantizerId}" is calibrated: it needs the input Hessian of tensor "${weight.name}", which the layer pass collects from calibration text; give --calib <text file> (and --blocks N)`,
    );
  }
  if (hessian.columns !== columns) {
    throw new ShapeMismatchError(weight.name, `has ${columns} input columns but its input Hessian is [${hessian.columns}, ${hessian.columns}]`);
  }
  return hessian;
}

/** An embedding unit given no Hessian: it has no layer input, and a calibrated quantizer takes the identity for it. */
function takesIdentityHessian(weight: WeightTensor, context: QuantizeContext | undefined): boolean {
  return context?.hessian === undefined && isEmbeddingUnit(unitOfTensorName(weight.name)?.module ?? '');
}

/** The config's groups, which GPTQ needs along the input dimension (axis 1). */
function columnGroups(weight: WeightTensor, config: QuantConfig): { readonly groupSize: number } {
  if (config.axis !== 1) {
    throw new InvalidOptionError('axis', `GPTQ quantizes column by column and needs groups along the input dimension (axis 1); tensor "${weight.name}" was asked for axis ${config.axis}`);
  }
  return groupLayout(weight.name, matrixShape(weight), config);
}

/**
 * GPTQ's pass on a diagonal Hessian, whose inverse factor has no off-diagonal entries: every error feedback is 0, so
 * each weight rounds on its group's grid, the range taken from the original weights (as the column loop takes it,
 * with or without act-order). Row-major, in O(rows x columns), the codes and ranges of solveGptqColumns bit for bit.
 */
export function roundOnGptqGrid(weight: WeightTensor, config: QuantConfig): GptqResult {
  const [rows, columns] = matrixShape(weight);
  const { groupSize } = columnGroups(weight, config);
  const groups = rows * (columns / groupSize);
  const maxq = 2 ** config.bits - 1;
  const data = weight.data;
  const codes = new Uint8Array(rows * columns);
  const low = new Float32Array(groups);
  const high = new Float32Array(groups);
  for (let g = 0; g < groups; g++) {
    const at = g * groupSize;
    let lo = 0;
    let hi = 0;
    for (let i = at; i < at + groupSize; i++) {
      const v = data[i]!;
      if (v < lo) lo = v;
      if (v > hi) hi = v;
    }
    const [l, h] = settleRange(lo, hi, config.symmetric);
    low[g] = l;
    high[g] = h;
    const { scale, zero } = gptqGrid(low[g]!, high[g]!, maxq, config.symmetric);
    for (let i = at; i < at + groupSize; i++) codes[i] = Math.min(Math.max(roundHalfEven(Math.fround(Math.fround(data[i]! * scale) + zero)), 0), maxq);
  }
  return { rows, columns, codes, low, high };
}

/** The identity as an input Hessian of `columns` columns (one sample). */
export function identityHessian(columns: number): InputHessian {
  const data = new Float64Array(columns * columns);
  for (let c = 0; c < columns; c++) data[c * columns + c] = 1;
  return Object.freeze({ columns, samples: 1, data });
}

/**
 * One GPTQ pass over a matrix, as a problem for a kernel (dead columns zeroed, act-order permutation, the groups'
 * ranges up front under act-order, batch ends) and how to read the solved problem back. `columnBits` gives each
 * original column its own width (BAQ); otherwise every column has `config.bits`; `losses` asks for each column's loss.
 */
export function gptqProblem(
  weight: WeightTensor,
  config: QuantConfig,
  prepared: PreparedHessian,
  settings: GptqSettings,
  columnBits?: Uint8Array,
  losses = false,
): { readonly problem: GptqProblem; finish(): GptqResult } {
  const [rows, columns] = matrixShape(weight);
  const { groupSize } = columnGroups(weight, config);
  if (prepared.columns !== columns) throw new ShapeMismatchError(weight.name, `has ${columns} input columns but its Hessian has ${prepared.columns}`);
  const groupsPerRow = columns / groupSize;
  // a symmetric config (`-sym`, no zero point): ranges [-m, m], zero 2^(b-1)
  const symmetric = config.symmetric;
  const { order, dead } = prepared;
  const source = weight.data;
  const weights = new Float32Array(rows * columns);
  for (let c = 0; c < columns; c++) {
    const o = order ? order[c]! : c;
    if (dead[o]) continue;
    for (let r = 0; r < rows; r++) weights[c * rows + r] = source[r * columns + o]!;
  }
  const low = new Float32Array(groupsPerRow * rows);
  const high = new Float32Array(groupsPerRow * rows);
  const groupOf = new Int32Array(columns);
  const rangeAt = new Uint8Array(columns);
  const maxq = new Float32Array(columns);
  for (let c = 0; c < columns; c++) {
    const o = order ? order[c]! : c;
    groupOf[c] = Math.floor(o / groupSize);
    rangeAt[c] = !order && c % groupSize === 0 ? 1 : 0;
    maxq[c] = 2 ** (columnBits ? columnBits[o]! : config.bits) - 1;
  }
  if (order) {
    // Static groups: every range from the original (dead-zeroed) weights, so the groups stay contiguous runs of the
    // original columns and the result exports like any affine matrix.
    for (let group = 0; group < groupsPerRow; group++) {
      for (let r = 0; r < rows; r++) {
        let lo = 0;
        let hi = 0;
        for (let o = group * groupSize; o < (group + 1) * groupSize; o++) {
          const v = dead[o] ? 0 : source[r * columns + o]!;
          if (v < lo) lo = v;
          if (v > hi) hi = v;
        }
        const [l, h] = settleRange(lo, hi, symmetric);
        low[group * rows + r] = l;
        high[group * rows + r] = h;
      }
    }
  }
  const codesByColumn = new Uint8Array(rows * columns);
  const problem: GptqProblem = {
    rows,
    columns,
    weights,
    inverse: prepared.inverse,
    groupSize,
    groupOf,
    rangeAt,
    maxq,
    blockEnds: gptqBlockEnds(columns, settings.blockSize, groupSize, !order),
    symmetric,
    low,
    high,
    codes: codesByColumn,
  };
  return { problem, finish };

  // the solved problem (codes, ranges, weights as each column was quantized) in the original order
  function finish(): GptqResult {
    const codes = new Uint8Array(rows * columns);
    for (let c = 0; c < columns; c++) {
      const o = order ? order[c]! : c;
      for (let r = 0; r < rows; r++) codes[r * columns + o] = codesByColumn[c * rows + r]!;
    }
    let columnLosses: Float64Array | undefined;
    if (losses) {
      // the solved problem's weights are each column's as it was quantized
      columnLosses = new Float64Array(columns);
      for (let c = 0; c < columns; c++) {
        const g0 = groupOf[c]! * rows;
        const diagonal = prepared.inverse[c * columns + c]!;
        let sum = 0;
        for (let r = 0; r < rows; r++) {
          const grid = gptqGrid(low[g0 + r]!, high[g0 + r]!, maxq[c]!, symmetric);
          const e = (weights[c * rows + r]! - (codesByColumn[c * rows + r]! - grid.zero) * grid.step) / diagonal;
          sum += e * e;
        }
        columnLosses[order ? order[c]! : c] = sum;
      }
    }
    // group table [group][rows] -> the row-major group order of a QuantizedTensor
    const lowByRow = new Float32Array(low.length);
    const highByRow = new Float32Array(high.length);
    for (let group = 0; group < groupsPerRow; group++) {
      for (let r = 0; r < rows; r++) {
        lowByRow[r * groupsPerRow + group] = low[group * rows + r]!;
        highByRow[r * groupsPerRow + group] = high[group * rows + r]!;
      }
    }
    return { rows, columns, codes, low: lowByRow, high: highByRow, ...(columnLosses ? { losses: columnLosses } : {}) };
  }
}

/** gptqProblem solved in the calling thread. */
export function runGptq(
  weight: WeightTensor,
  config: QuantConfig,
  prepared: PreparedHessian,
  settings: GptqSettings,
  kernel: GptqKernel,
  columnBits?: Uint8Array,
  losses = false,
): GptqResult {
  const { problem, finish } = gptqProblem(weight, config, prepared, settings, columnBits, losses);
  kernel.solve(problem);
  return finish();
}

/** A kernel that solves problems elsewhere (the worker pool): it fills the problem's weights, codes and ranges. */
export type GptqSolver = (problem: GptqProblem) => Promise<void>;


/** Picks the GPTQ kernel for a row count; the WebAssembly instance is made on first use and kept. */
export function gptqKernelPicker(choice: KernelChoice): (rows: number) => GptqKernel {
  let wasm: GptqKernel | undefined | null;
  return (rows) => {
    if (choice === 'typescript') return typescriptGptqKernel;
    if (wasm === undefined) wasm = createWasmGptqKernel() ?? null;
    if (wasm && wasm.supports(rows)) return wasm;
    if (choice === 'wasm') {
      throw new InvalidOptionError('kernel', wasm ? `the WebAssembly GPTQ kernel needs a row count that is a multiple of 4, not ${rows}; use kernel "auto"` : 'WebAssembly SIMD is not available in this runtime; use kernel "auto" or "typescript"');
    }
    return typescriptGptqKernel;
  };
}

/** A quantizer's prepared Hessians, each made once per Hessian object (q/k/v share a Hessian, as do gate/up). */
export interface PreparedHessians {
  /** Prepared in the calling thread (or the one already made). */
  now(hessian: InputHessian, tensor: string): PreparedHessian;
  /** Prepared with its O(n^3) regions split over helper threads (prepareHessianOn; without threads: `now`); the same result. */
  on(threads: CholeskyThreads | undefined, hessian: InputHessian, tensor: string): Promise<PreparedHessian>;
}

/** The cache of PreparedHessians, by Hessian object, for these settings and kernel choice. */
export function preparedHessianCache(settings: GptqSettings, kernel: KernelChoice = 'auto'): PreparedHessians {
  const cache = new WeakMap<InputHessian, PreparedHessian | Promise<PreparedHessian>>();
  const now = (hessian: InputHessian, tensor: string): PreparedHessian => {
    const cached = cache.get(hessian);
    if (cached && !(cached instanceof Promise)) return cached;
    // one still being prepared on threads is not waited for (a synchronous caller cannot): made again here
    const prepared = prepareHessian(hessian, { ...settings, kernel }, tensor);
    cache.set(hessian, prepared);
    return prepared;
  };
  const on = (threads: CholeskyThreads | undefined, hessian: InputHessian, tensor: string): Promise<PreparedHessian> => {
    if (!threads) return Promise.resolve(now(hessian, tensor));
    const cached = cache.get(hessian);
    if (cached) return Promise.resolve(cached);
    const pending = prepareHessianOn(threads, hessian, { ...settings, kernel }, tensor);
    cache.set(hessian, pending);
    pending.then(
      (prepared) => cache.set(hessian, prepared),
      () => cache.delete(hessian),
    );
    return pending;
  };
  return { now, on };
}

/** GPTQ's report for a matrix: what the Hessian needed. */
export function gptqReport(prepared: Pick<PreparedHessian, 'deadColumns' | 'dampening' | 'retries'>): Readonly<Record<string, number>> {
  return Object.freeze({ deadColumns: prepared.deadColumns, dampening: prepared.dampening, dampeningRetries: prepared.retries });
}

/** The affine QuantizedTensor of a GPTQ result: per group `s = fp32(1 / step)` and the integer zero of its grid. */
export function gptqQuantizedTensor(weight: WeightTensor, config: QuantConfig, result: GptqResult, report: Readonly<Record<string, number>>): QuantizedTensor {
  const maxq = 2 ** config.bits - 1;
  const scale = new Float32Array(result.low.length);
  const zero = new Float32Array(result.low.length);
  for (let k = 0; k < scale.length; k++) {
    const grid = gptqGrid(result.low[k]!, result.high[k]!, maxq, config.symmetric);
    scale[k] = grid.scale;
    zero[k] = grid.zero;
  }
  return Object.freeze({
    name: weight.name,
    shape: [result.rows, result.columns] as [number, number],
    config,
    method: 'gptq',
    packed: packCodes(result.codes, result.rows, result.columns, config.bits),
    packing: PACKING,
    scale,
    zero,
    report,
  });
}

/** A quantizer whose column loops can run elsewhere (quantizeModel hands it the kernel worker pool's solver). */
export interface PooledQuantizer extends Quantizer {
  /** `threads`: helper threads for the Hessian's factorization (the pool's workers; prepareHessianOn). */
  quantizeOn(solve: GptqSolver, weight: WeightTensor, config: QuantConfig, context?: QuantizeContext, threads?: CholeskyThreads): Promise<QuantizedTensor>;
}

export function isPooledQuantizer(quantizer: Quantizer): quantizer is PooledQuantizer {
  return typeof (quantizer as Partial<PooledQuantizer>).quantizeOn === 'function';
}

export interface GptqQuantizer extends PooledQuantizer {
  readonly id: 'gptq';
  readonly calibration: 'hessian';
  readonly settings: GptqSettings;
}

/**
 * GPTQ as a calibrated quantizer: `quantize(weight, config, { hessian })`. The codes, scales and integer zeros are the
 * affine layout MatMulNBits holds (exported with no correction). Stateless apart from a cache of prepared Hessians
 * keyed by the Hessian object, so the projections that share a Hessian factor it once. `quantizeOn` runs the column
 * loop through a solver (the worker pool's), with the same result.
 */
export function createGptqQuantizer(options: GptqOptions = {}): GptqQuantizer {
  const { kernel: choice, ...rest } = options;
  const settings = gptqSettings(rest);
  const kernelFor = gptqKernelPicker(choice ?? 'auto');
  const prepare = preparedHessianCache(settings, choice ?? 'auto');
  // The matrix's checks, then its Hessian (prepared by the caller: here, or on the helper threads).
  const hessianOf = (weight: WeightTensor, config: QuantConfig, context: QuantizeContext | undefined) => {
    const [rows, columns] = matrixShape(weight);
    groupLayout(weight.name, [rows, columns], config);
    return requireHessian('gptq', weight, context);
  };
  const problemOf = (weight: WeightTensor, config: QuantConfig, prepared: PreparedHessian) => ({ prepared, ...gptqProblem(weight, config, prepared, settings) });
  // An embedding unit's identity (requireHessian): no factorization (O(columns^3)) and no feedback loop (O(rows x
  // columns^2), minutes for a 7B vocabulary): the same result (tested against the full pass on the identity).
  const diagonal = (weight: WeightTensor, config: QuantConfig, context: QuantizeContext | undefined): QuantizedTensor | undefined => {
    if (!takesIdentityHessian(weight, context)) return undefined;
    // prepareHessian's report for the identity: no dead column, the dampening asked for, no retry
    return gptqQuantizedTensor(weight, config, roundOnGptqGrid(weight, config), gptqReport({ deadColumns: 0, dampening: settings.dampening, retries: 0 }));
  };
  return Object.freeze({
    id: 'gptq' as const,
    calibration: 'hessian' as const,
    packedLayout: 'affine' as const,
    // GPTQ's grid has an integer zero point (or none, symmetric): a fractional config gets the same codes.
    zeroKinds: Object.freeze(['integer', 'none'] as const),
    settings,
    quantize(weight: WeightTensor, config: QuantConfig, context?: QuantizeContext): QuantizedTensor {
      const rounded = diagonal(weight, config, context);
      if (rounded) return rounded;
      const { prepared, problem, finish } = problemOf(weight, config, prepare.now(hessianOf(weight, config, context), weight.name));
      kernelFor(problem.rows).solve(problem);
      return gptqQuantizedTensor(weight, config, finish(), gptqReport(prepared));
    },
    async quantizeOn(solve: GptqSolver, weight: WeightTensor, config: QuantConfig, context?: QuantizeContext, threads?: CholeskyThreads): Promise<QuantizedTensor> {
      const rounded = diagonal(weight, config, context);
      if (rounded) return rounded;
      const hessian = hessianOf(weight, config, context);
      const { prepared, problem, finish } = problemOf(weight, config, await prepare.on(threads, hessian, weight.name));
      await solve(problem);
      return gptqQuantizedTensor(weight, config, finish(), gptqReport(prepared));
    },
    dequantize: (quantized: QuantizedTensor) => dequantizeTensor(quantized),
  });
}

/** GPTQ with its defaults (dampening 0.01, no act-order, batches of 128) and the fastest kernel. */
export const gptqQuantizer: GptqQuantizer = createGptqQuantizer();
