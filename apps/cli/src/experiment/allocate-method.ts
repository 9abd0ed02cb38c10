import {
  ablationAllocator,
  kurtBoostAllocator,
  mxqAllocator,
  sensiBoostAllocator,
  uniformAllocator,
  type ModelStats,
} from '@layerquant/allocators';
import { BUDGET_STOPS, InfeasibleBudgetError, budgetStopIndex, findBudgetStop, type Allocation } from '@layerquant/core';
import type { MethodSpec } from './grid.js';

/** Options in words for tables: `boost_stop=2 top_m=1`. */
export function describeOptions(method: MethodSpec): string {
  const parts: string[] = [];
  if (method.imitate) parts.push(`imitates=${method.imitate}`);
  if (method.boostStop !== undefined) parts.push(`boost_stop=${method.boostStop}`);
  if (method.topM !== undefined) parts.push(`top_m=${method.topM === 0 ? 'all' : method.topM}`);
  return parts.join(' ');
}

/** Runs the allocator a method names at a budget. */
export function allocateMethod(method: MethodSpec, stats: ModelStats, budget: number, seed = 42): Allocation {
  switch (method.allocator) {
    case 'uniform':
      return uniformAllocator.allocate(stats, { budget });
    case 'mxq':
      return mxqAllocator.allocate(stats, { budget });
    case 'sensiboost':
      return sensiBoostAllocator.allocate(stats, { budget, boostStop: method.boostStop ?? 2, topM: method.topM ?? 1 });
    case 'kurtboost':
      return kurtBoostAllocator.allocate(stats, { budget, boostStop: method.boostStop ?? 2, topM: method.topM ?? 1 });
    case 'ablation':
      return ablationAllocator.allocate(stats, { budget, boostStop: method.boostStop ?? 2, topM: method.topM ?? 1, imitate: method.imitate ?? 'sensiboost', seed });
  }
}

/**
 * Checks a budget before any long step (statistics take minutes): the boosts and uniform need a budget stop, MXQ
 * at least the cheapest of the 12 configs.
 */
export function checkBudget(method: MethodSpec, budget: number): void {
  if (method.allocator === 'mxq') {
    const cheapest = BUDGET_STOPS[0]!.bpp;
    if (budget < cheapest - 1e-12) throw new InfeasibleBudgetError(budget, Math.ceil(cheapest * 1000) / 1000);
    return;
  }
  budgetStopIndex(budget);
}

/** HQQ uniform at a budget stop, the baseline of "extra memory"; undefined where the budget is no stop (MXQ takes any). */
export function uniformBaseline(stats: ModelStats, budget: number): Allocation | undefined {
  return findBudgetStop(budget) < 0 ? undefined : uniformAllocator.allocate(stats, { budget });
}

/** Memory of `allocation` over `baseline`, percent; NaN without a baseline. */
export function extraMemoryPercent(allocation: Allocation, baseline: Allocation | undefined): number {
  return baseline ? (100 * (allocation.totals.memoryMB - baseline.totals.memoryMB)) / baseline.totals.memoryMB : Number.NaN;
}
