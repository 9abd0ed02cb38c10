// The statistics tables are @layerquant/stats' (re-exported at the entry: a bundler keeps an entry's export-star).
export * from '@layerquant/stats';
export * from './outliers.js';
export * from './multiple-choice-knapsack.js';
export * from './mxq.js';
export * from './cost-knapsack.js';
export * from './milp.js';
export * from './measured-refinement.js';
export * from './kld.js';
export * from './registry.js';
export * from './boost.js';
export * from './random.js';
export * from './allocation-csv.js';
export * from './baseline.js';
export * from './allocation-check.js';

import { ablationAllocator, kurtBoostAllocator, sensiBoostAllocator, uniformAllocator } from './boost.js';
import { headPrioritizedAllocator, kurtMilpAllocator, kurtScaledAllocator, measuredAllocator, sensiMilpAllocator, tailPrioritizedAllocator } from './milp.js';
import { mxqAllocator } from './mxq.js';
import { kldAllocator } from './kld.js';

/**
 * The allocators as typed functions (`{ id, allocate(stats, options) }`), for code that calls one directly. Apps
 * list and run them through `ALLOCATOR_PLUGINS` (options with defaults and help, tables needed, method names).
 */
export const ALLOCATORS = Object.freeze([
  uniformAllocator,
  mxqAllocator,
  sensiBoostAllocator,
  kurtBoostAllocator,
  ablationAllocator,
  sensiMilpAllocator,
  kurtMilpAllocator,
  kurtScaledAllocator,
  headPrioritizedAllocator,
  tailPrioritizedAllocator,
  measuredAllocator,
  kldAllocator,
] as const);
