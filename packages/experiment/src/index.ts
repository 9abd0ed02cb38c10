// The paper's comparison as a library: a grid of methods x budgets, each cell allocated, quantized and evaluated on
// the same windows, results kept by settings key, reported with paired bootstrap intervals.
export * from './grid.js';
export * from './plan.js';
export * from './cell.js';
export * from './run-experiment.js';
export * from './results-store.js';
export * from './report.js';
export * from './calibrate.js';
export * from './run-grid.js';
