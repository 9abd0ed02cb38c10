import type { Allocation } from '@layerquant/core';
import { uniformAllocator } from './boost.js';
import { floorStop, isLadderStop, type AllocationContext } from './registry.js';
import type { ModelStats } from './stats.js';

/**
 * HQQ uniform at a stop of the ladder, the baseline of "extra memory"; undefined where the budget is no stop (the
 * knapsacks take any), unless `floorToStop`: then uniform at the highest stop at or below it.
 */
export function uniformBaseline(stats: ModelStats, context: Pick<AllocationContext, 'budget' | 'configs' | 'floorToStop'>): Allocation | undefined {
  const { budget, configs } = context;
  if (!isLadderStop(budget, configs) && !context.floorToStop) return undefined;
  const stop = context.floorToStop ? floorStop(budget, configs) : budget;
  return uniformAllocator.allocate(stats, { budget: stop, ...(configs ? { configs } : {}) });
}

/** Memory of `allocation` over `baseline` (paper accounting), percent; NaN without a baseline. */
export function extraMemoryPercent(allocation: Allocation, baseline: Allocation | undefined): number {
  return baseline ? (100 * (allocation.totals.memoryMB - baseline.totals.memoryMB)) / baseline.totals.memoryMB : Number.NaN;
}
