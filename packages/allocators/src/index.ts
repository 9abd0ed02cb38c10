export * from './stats.js';
export * from './validate-stats.js';
export * from './outliers.js';
export * from './multiple-choice-knapsack.js';
export * from './mxq.js';
export * from './boost.js';
export * from './random.js';
export * from './allocation-csv.js';
export { readCsv, formatCsv } from './csv.js';
export type { CsvDocument, CsvRecord } from './csv.js';

import { ablationAllocator, kurtBoostAllocator, sensiBoostAllocator, uniformAllocator } from './boost.js';
import { mxqAllocator } from './mxq.js';

/** The five allocators, for an app to register in its own registry (nothing registers on import). */
export const ALLOCATORS = Object.freeze([uniformAllocator, mxqAllocator, sensiBoostAllocator, kurtBoostAllocator, ablationAllocator] as const);
