// The statistics tables (fnorm, sensitivity, kurtosis, measured): types, the authors' CSV layouts, validation.
// Producers (@layerquant/sensitivity) and consumers (@layerquant/allocators, the apps) both depend on this package.
export * from './stats.js';
export * from './validate-stats.js';
export { columnIndex, field, formatCsv, formatNumber, integerField, numberField, readCsv, type CsvDocument, type CsvRecord } from './csv.js';
