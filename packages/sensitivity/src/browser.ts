// Browser-safe entry: kurtosis and the Frobenius-error table over any matrix source (no files, no threads),
// for a page that measures a model it read itself.
export { kurtosis, pearsonKurtosis } from './kurtosis.js';
export {
  frobeniusRows,
  frobeniusTable,
  kurtosisTable,
  kurtosisTableFromFnorm,
  listMatrices,
  type FrobeniusTableOptions,
  type MatrixRef,
  type MatrixSource,
} from './frobenius-table.js';
export { QuantizationErrors } from './pooled-quantize.js';
