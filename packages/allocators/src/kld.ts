import { InvalidDataError } from '@layerquant/core';
import type { StatsAllocator } from './boost.js';
import { buildCostProblem, solveCostProblem, type CostProblem, type KnapsackAllocation, type KnapsackOptions } from './cost-knapsack.js';
import { refineByMeasurement, type AllocationMeasurer, type RefinedAllocation, type RefinementOptions } from './measured-refinement.js';
import type { ModelStats } from './stats.js';

/**
 * kld (layerquant's end-to-end allocator): the least summed end-to-end ΔKLD (kld.csv: the KL divergence of the final
 * logits from the float model's with each unit alone at each config) within the size budget, the same knapsack and
 * size accounting as the others; then, given a measurer (the model and its calibration), corrected for the
 * interactions the sum leaves out by re-measuring around the solution (refineByMeasurement), never ending worse than
 * the additive solution.
 */

/** The program of the kld table: one class per unit, its ΔKLD as the cost. */
export function kldCostProblem(stats: ModelStats, options: Pick<KnapsackOptions, 'configs' | 'size'>): CostProblem {
  if (!stats.kld) {
    throw new InvalidDataError(stats.source ?? 'statistics', 'kld needs kld.csv (end-to-end ΔKLD of every unit and config): run `layerquant sensitivity --metrics kld`');
  }
  return buildCostProblem(stats.kld.rows, (r) => r.deltaKld, `${stats.source ?? '.'}/kld.csv`, options.configs, options.size);
}

export const kldAllocator: StatsAllocator<KnapsackOptions, KnapsackAllocation> = Object.freeze({
  id: 'kld',
  allocate(input: ModelStats, options: KnapsackOptions): KnapsackAllocation {
    return solveCostProblem(kldCostProblem(input, options), 'kld', options);
  },
});

/** The additive solution corrected for interactions by measurement (rounds 0: the additive solution, measured). */
export async function refineKldAllocation(
  stats: ModelStats,
  additive: KnapsackAllocation,
  measurer: AllocationMeasurer,
  options: RefinementOptions,
): Promise<RefinedAllocation> {
  return refineByMeasurement(kldCostProblem(stats, options), additive, measurer, 'kld', options);
}
