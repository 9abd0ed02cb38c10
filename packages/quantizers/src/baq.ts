// BAQ (Zhang, Wang, Lasaulce, Debbah 2025, "BAQ: Efficient Bit Allocation Quantization for Large Language Models";
// CSU-ModelCompression/BAQ): a width per input column from the equal-loss rule, on GPTQ's pass.
import { InvalidDataError, InvalidOptionError, configName, type QuantConfig, type QuantizeContext, type QuantizedTensor, type Quantizer, type WeightTensor } from '@layerquant/core';
import { PACKING, packColumnCodes, unpackColumnCodes, wordsPerRow } from './bit-packing.js';
import {
  gptqKernelPicker,
  gptqProblem,
  gptqReport,
  gptqSettings,
  preparedHessianCache,
  requireHessian,
  type GptqOptions,
  type GptqSettings,
  type GptqSolver,
  type PooledQuantizer,
} from './gptq.js';
import type { CholeskyThreads } from './cholesky-kernel.js';
import { gridOfRange, type GptqProblem, type PreparedHessian } from './gptq-solver.js';
import { groupLayout, matrixShape } from './grouping.js';

/** The widest column BAQ gives (codes are bytes). */
export const BAQ_MAX_COLUMN_BITS = 8;

/**
 * BAQ's allocation: integer widths R_j in [0, maxBits] with sum R_j = columns x averageBits that minimize
 * sum_j c_j 4^-R_j, the paper's loss model (a column's GPTQ loss falls by 4 per bit; c_j its loss at the average
 * width, GPTQ's first pass). The paper's closed form R_j = R + (1/2) log2(c_j / geomean(c)) is this problem's
 * continuous solution (every column at equal loss); whole bits are given here one at a time to the column whose loss
 * falls most (optimal for a separable convex objective), so the average is exact. Ties go to the lower column.
 */
export function equalLossColumnBits(losses: Float64Array, averageBits: number, maxBits = BAQ_MAX_COLUMN_BITS): Uint8Array {
  const n = losses.length;
  const bits = new Uint8Array(n);
  // a max-heap of the next bit's gain c_j 4^-R_j (proportional to the loss removed), by column
  const gain = (j: number) => losses[j]! * 4 ** -bits[j]!;
  const heap = Int32Array.from({ length: n }, (_, j) => j);
  const before = (a: number, b: number) => gain(a) > gain(b) || (gain(a) === gain(b) && a < b);
  const sift = (start: number, size: number) => {
    let i = start;
    for (;;) {
      const l = 2 * i + 1;
      const r = l + 1;
      let best = i;
      if (l < size && before(heap[l]!, heap[best]!)) best = l;
      if (r < size && before(heap[r]!, heap[best]!)) best = r;
      if (best === i) return;
      [heap[i], heap[best]] = [heap[best]!, heap[i]!];
      i = best;
    }
  };
  let size = n;
  for (let i = Math.floor(n / 2) - 1; i >= 0; i--) sift(i, size);
  for (let budget = Math.round(n * averageBits); budget > 0 && size > 0; budget--) {
    const j = heap[0]!;
    bits[j]!++;
    if (bits[j] === maxBits) heap[0] = heap[--size]!;
    sift(0, size);
  }
  return bits;
}

export interface BaqQuantizer extends PooledQuantizer {
  readonly id: 'baq';
  readonly calibration: 'hessian';
  readonly columnBits: true;
  readonly settings: GptqSettings;
}

/**
 * BAQ as a calibrated quantizer: GPTQ at the config's bits gives each input column's loss; the equal-loss rule turns
 * the losses into a width per column at the same average (config.bits); GPTQ runs again with those widths. Each group
 * stores its range (`scale` holds its fp32 width, `zero` its low end) and each column its width (`columnBits`); a
 * code's grid is GPTQ's grid of the group's range at the column's width. Per-column widths have no MatMulNBits form:
 * no `packedLayout`, so the export refuses it and evaluation reads it through `dequantize`.
 */
export function createBaqQuantizer(options: GptqOptions = {}): BaqQuantizer {
  const { kernel: choice, ...rest } = options;
  const settings = gptqSettings(rest);
  const kernelFor = gptqKernelPicker(choice ?? 'auto');
  const prepare = preparedHessianCache(settings, choice ?? 'auto');
  // The two GPTQ passes, each solved by `solve` (in this thread or on the pool).
  // The matrix's checks, then its Hessian (prepared by the caller: here, or on the helper threads).
  const hessianOf = (weight: WeightTensor, config: QuantConfig, context: QuantizeContext | undefined) => {
    groupLayout(weight.name, matrixShape(weight), config);
    // each group stores its range and a value's grid follows from it and the column's width; a symmetric grid would not
    if (config.symmetric) throw new InvalidOptionError('config', `BAQ quantizes on asymmetric grids (each group stores its range); ${configName(config)} is symmetric, use b${config.bits}g${config.groupSize}`);
    return requireHessian('baq', weight, context);
  };
  function* passes(weight: WeightTensor, config: QuantConfig, prepared: PreparedHessian): Generator<GptqProblem, QuantizedTensor, void> {
    const [rows, columns] = matrixShape(weight);
    const first = gptqProblem(weight, config, prepared, settings, undefined, true);
    yield first.problem;
    const columnBits = equalLossColumnBits(first.finish().losses!, config.bits);
    const second = gptqProblem(weight, config, prepared, settings, columnBits);
    yield second.problem;
    const result = second.finish();
    const scale = new Float32Array(result.low.length);
    for (let k = 0; k < scale.length; k++) scale[k] = Math.fround(result.high[k]! - result.low[k]!);
    return Object.freeze({
      name: weight.name,
      shape: [rows, columns] as [number, number],
      config,
      method: 'baq',
      packed: packColumnCodes(result.codes, rows, columns, columnBits, wordsPerRow(columns, config.bits)),
      packing: PACKING,
      scale,
      zero: result.low,
      columnBits,
      report: gptqReport(prepared),
    });
  }
  return Object.freeze({
    id: 'baq' as const,
    calibration: 'hessian' as const,
    columnBits: true as const,
    settings,
    quantize(weight: WeightTensor, config: QuantConfig, context?: QuantizeContext): QuantizedTensor {
      const run = passes(weight, config, prepare.now(hessianOf(weight, config, context), weight.name));
      for (let step = run.next(); ; step = run.next()) {
        if (step.done) return step.value;
        kernelFor(step.value.rows).solve(step.value);
      }
    },
    async quantizeOn(solve: GptqSolver, weight: WeightTensor, config: QuantConfig, context?: QuantizeContext, threads?: CholeskyThreads): Promise<QuantizedTensor> {
      const hessian = hessianOf(weight, config, context);
      const run = passes(weight, config, await prepare.on(threads, hessian, weight.name));
      for (let step = run.next(); ; step = run.next()) {
        if (step.done) return step.value;
        await solve(step.value);
      }
    },
    dequantize: (quantized: QuantizedTensor) => dequantizeBaq(quantized),
  });
}

/** Values of a BAQ tensor: code c of column j in group k is `(c - z) * step` of gridOfRange(zero[k], scale[k], 2^R_j - 1). */
export function dequantizeBaq(quantized: QuantizedTensor): Float32Array {
  const [rows, columns] = quantized.shape;
  const { bits, groupSize } = quantized.config;
  const columnBits = quantized.columnBits;
  if (!columnBits || columnBits.length !== columns) {
    throw new InvalidDataError(quantized.name, `a BAQ matrix needs a code width for each of its ${columns} columns; it has ${columnBits?.length ?? 'none'}`);
  }
  const groupsPerRow = columns / groupSize;
  if (quantized.scale.length !== rows * groupsPerRow || quantized.zero.length !== rows * groupsPerRow) {
    throw new InvalidDataError(quantized.name, `has ${quantized.scale.length} ranges; a [${rows}, ${columns}] matrix in groups of ${groupSize} needs ${rows * groupsPerRow}`);
  }
  const codes = unpackColumnCodes(quantized.packed, rows, columns, columnBits, wordsPerRow(columns, bits));
  const values = new Float32Array(rows * columns);
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < columns; c++) {
      const k = r * groupsPerRow + Math.floor(c / groupSize);
      const grid = gridOfRange(quantized.zero[k]!, quantized.scale[k]!, 2 ** columnBits[c]! - 1, false);
      values[r * columns + c] = Math.fround((codes[r * columns + c]! - grid.zero) * grid.step);
    }
  }
  return values;
}

/** BAQ with GPTQ's defaults. */
export const baqQuantizer: BaqQuantizer = createBaqQuantizer();
