import {
  InfeasibleBudgetError,
  InvalidDataError,
  LayerquantError,
  InvalidOptionError,
  allocationTotals,
  configName,
  matrixKey,
  quantConfig,
  type Allocation,
  type MatrixAllocation,
  type MatrixInfo,
  type QuantConfig,
} from '@layerquant/core';
import { KnapsackSearchLimitError, solveMultipleChoiceKnapsack, type MultipleChoiceKnapsack } from './multiple-choice-knapsack.js';
import { matricesOf, type FnormTable, type ModelStats } from './stats.js';
import type { StatsAllocator } from './boost.js';

/** Bits in one MB (2^20 bytes). */
const BITS_PER_MB = 8 * 2 ** 20;

export interface MxqOptions {
  /** Bits per weight; the memory limit is budget * (sum of params) / 8 / 2^20 MB, as the authors set it. */
  readonly budget: number;
  /** Proven relative gap to stop at (1e-6). */
  readonly relativeGap?: number;
  /** Cap on dynamic-programming states before giving up. */
  readonly maxStates?: number;
}

export interface MxqSolverReport {
  /** Sum of fnorm over the chosen configs. */
  readonly objective: number;
  /** Proven lower bound: no allocation within the budget has a smaller sum. */
  readonly bound: number;
  /** (objective - bound) / objective. */
  readonly gap: number;
  /** LP relaxation value. */
  readonly lpBound: number;
  readonly seconds: number;
  readonly nodes: number;
  /** Matrices whose config was still open after reduced-cost fixing. */
  readonly freeMatrices: number;
  readonly memoryLimitMB: number;
  /** Memory of the allocation as the fnorm table's memmb column counts it. */
  readonly memoryMB: number;
}

export interface MxqAllocation extends Allocation {
  readonly solver: MxqSolverReport;
}

/** The MXQ program of a table: one class per matrix, one item per config row (cost fnorm, weight memmb). */
export interface MxqProblem {
  readonly matrices: readonly MatrixInfo[];
  readonly configs: readonly (readonly QuantConfig[])[];
  readonly fnorm: readonly Float64Array[];
  readonly memoryMB: readonly Float64Array[];
  readonly totalParams: number;
}

export function buildMxqProblem(table: FnormTable, source = 'fnorm.csv'): MxqProblem {
  const matrices = matricesOf({ fnorm: table, source });
  const position = new Map(matrices.map((m, i) => [m.key, i]));
  const rows: { config: QuantConfig; fnorm: number; memoryMB: number }[][] = matrices.map(() => []);
  for (const r of table.rows) {
    rows[position.get(matrixKey(r.layer, r.module))!]!.push({ config: quantConfig(r.bits, r.groupSize), fnorm: r.fnorm, memoryMB: r.memoryMB });
  }
  for (let i = 0; i < matrices.length; i++) {
    if (rows[i]!.length === 0) throw new InvalidDataError(source, `matrix ${matrices[i]!.key} has no config rows`);
  }
  let totalParams = 0;
  for (const m of matrices) totalParams += m.params;
  return {
    matrices,
    configs: rows.map((list) => list.map((r) => r.config)),
    fnorm: rows.map((list) => Float64Array.from(list, (r) => r.fnorm)),
    memoryMB: rows.map((list) => Float64Array.from(list, (r) => r.memoryMB)),
    totalParams,
  };
}

/**
 * Memory in whole bits when the table's memmb values are exact (they are bpp*params/2^23 with bpp a
 * dyadic fraction), so sums and the budget comparison are exact integers; otherwise MB as given.
 */
function knapsackOf(problem: MxqProblem, budget: number): { knapsack: MultipleChoiceKnapsack; unit: number } {
  let integral = true;
  for (const list of problem.memoryMB) {
    for (const mb of list) {
      const bits = mb * BITS_PER_MB;
      if (Math.abs(bits - Math.round(bits)) > 1e-6 || bits > Number.MAX_SAFE_INTEGER / 4096) integral = false;
    }
  }
  const unit = integral ? BITS_PER_MB : 1;
  const classes = problem.memoryMB.map((list, i) => ({
    weights: Float64Array.from(list, (mb) => (integral ? Math.round(mb * BITS_PER_MB) : mb)),
    costs: problem.fnorm[i]!,
  }));
  const limit = (budget * problem.totalParams) / 8 / 2 ** 20; // MB, the authors' budget_mb
  const capacity = integral ? Math.floor(limit * BITS_PER_MB * (1 + 1e-12)) : limit;
  return { knapsack: { classes, capacity }, unit };
}

/** Solves MXQ on a table: least total fnorm within the memory budget, to a proven relative gap. */
export function solveMxq(problem: MxqProblem, options: MxqOptions): MxqAllocation {
  const { budget } = options;
  if (!Number.isFinite(budget) || budget <= 0) throw new InvalidOptionError('budget', `${budget} must be a positive number of bits per weight`);
  const relativeGap = options.relativeGap ?? 1e-6;
  if (!(relativeGap >= 0)) throw new InvalidOptionError('relativeGap', `${relativeGap} must be >= 0`);
  const { knapsack, unit } = knapsackOf(problem, budget);
  let result;
  try {
    result = solveMultipleChoiceKnapsack(knapsack, { relativeGap, ...(options.maxStates === undefined ? {} : { maxStates: options.maxStates }) });
  } catch (error) {
    if (error instanceof KnapsackSearchLimitError) {
      throw new LayerquantError('SOLVER_LIMIT', `MXQ at budget ${budget}: ${error.message}`, { cause: error });
    }
    throw error;
  }
  if (result.status === 'infeasible') {
    // Smallest budget (rounded up to 1e-4 bits per weight) whose limit fits every matrix at its lightest config.
    const bitsNeeded = (result.minimumWeight / unit) * BITS_PER_MB;
    const smallest = Math.ceil((bitsNeeded / problem.totalParams) * 1e4 - 1e-9) / 1e4;
    throw new InfeasibleBudgetError(budget, smallest);
  }
  const matrices: MatrixAllocation[] = problem.matrices.map((m, i) => Object.freeze({ ...m, config: problem.configs[i]![result.choice[i]!]! }));
  let memoryMB = 0;
  for (let i = 0; i < matrices.length; i++) memoryMB += problem.memoryMB[i]![result.choice[i]!]!;
  return Object.freeze({
    method: 'mxq',
    options: Object.freeze({ budget, relativeGap }),
    budget,
    matrices: Object.freeze(matrices),
    totals: allocationTotals(matrices),
    solver: Object.freeze({
      objective: result.objective,
      bound: result.bound,
      gap: result.gap,
      lpBound: result.lpBound,
      seconds: result.seconds,
      nodes: result.nodes,
      freeMatrices: result.freeClasses,
      memoryLimitMB: (budget * problem.totalParams) / 8 / 2 ** 20,
      memoryMB,
    }),
  });
}

/** MXQ (the authors' MILP): one config per matrix minimising the summed Frobenius error within a memory budget. */
export const mxqAllocator: StatsAllocator<MxqOptions, MxqAllocation> = Object.freeze({
  id: 'mxq',
  allocate(input: ModelStats, options: MxqOptions): MxqAllocation {
    if (!input.fnorm) throw new InvalidDataError(input.source ?? 'statistics', 'MXQ needs the fnorm table (fnorm.csv: fnorm and memmb per matrix and config)');
    return solveMxq(buildMxqProblem(input.fnorm, `${input.source ?? '.'}/fnorm.csv`), options);
  },
});

/** Config names of an allocation, keyed by matrix (handy for comparisons and JSON). */
export function allocationConfigNames(allocation: Allocation): Record<string, string | null> {
  return Object.fromEntries(allocation.matrices.map((m) => [m.key, m.config ? configName(m.config) : null]));
}
