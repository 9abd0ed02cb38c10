import { InvalidDataError, configName, type Allocation, type QuantConfig } from '@layerquant/core';
import { buildCostProblem, solveCostProblem, type CostProblem, type KnapsackAllocation, type KnapsackOptions, type KnapsackSolverReport, type SizeBudget } from './cost-knapsack.js';
import { matricesOf, type FnormTable, type ModelStats } from './stats.js';
import type { StatsAllocator } from './boost.js';

export interface MxqOptions extends KnapsackOptions {}

export type MxqSolverReport = KnapsackSolverReport;

export interface MxqAllocation extends KnapsackAllocation {}

/** The MXQ program of a table: one class per matrix, one item per config row (cost fnorm, weight memmb). */
export interface MxqProblem extends CostProblem {
  readonly fnorm: readonly Float64Array[];
}

export function buildMxqProblem(table: FnormTable, source = 'fnorm.csv', configs?: readonly QuantConfig[], size?: SizeBudget): MxqProblem {
  matricesOf({ fnorm: table, source }); // every module covers layers 0..L-1
  const problem = buildCostProblem(table.rows, (r) => r.fnorm, source, configs, size);
  return { ...problem, fnorm: problem.costs };
}

/** Solves MXQ on a table: least total fnorm within the memory budget, to a proven relative gap. */
export function solveMxq(problem: MxqProblem, options: MxqOptions): MxqAllocation {
  return solveCostProblem(problem, 'mxq', options);
}

/** MXQ (the authors' MILP): one config per matrix minimising the summed Frobenius error within a memory budget. */
export const mxqAllocator: StatsAllocator<MxqOptions, MxqAllocation> = Object.freeze({
  id: 'mxq',
  allocate(input: ModelStats, options: MxqOptions): MxqAllocation {
    if (!input.fnorm) throw new InvalidDataError(input.source ?? 'statistics', 'MXQ needs the fnorm table (fnorm.csv: fnorm and memmb per matrix and config)');
    return solveMxq(buildMxqProblem(input.fnorm, `${input.source ?? '.'}/fnorm.csv`, options.configs, options.size), options);
  },
});

/** Config names of an allocation, keyed by matrix (handy for comparisons and JSON). */
export function allocationConfigNames(allocation: Allocation): Record<string, string | null> {
  return Object.fromEntries(allocation.matrices.map((m) => [m.key, m.config ? configName(m.config) : null]));
}
