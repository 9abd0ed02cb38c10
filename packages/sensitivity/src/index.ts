export { kurtosis, pearsonKurtosis } from './kurtosis.js';
export {
  CALIBRATION_ORDERS,
  DEFAULT_CALIBRATION_BLOCKS,
  DEFAULT_CALIBRATION_SEED,
  DEFAULT_SEQLEN,
  calibrationBlocks,
  cutCalibrationBlocks,
  seededPermutation,
  seededRandom,
  type CalibrationBlocks,
  type CalibrationOptions,
  type CalibrationOrder,
  type CalibrationTokenizer,
} from './calibration.js';
export {
  DEFAULT_SENSITIVITY_CONFIG,
  SENSITIVITY_PART_MODULES,
  activationSensitivity,
  type ActivationSensitivityOptions,
} from './activation-sensitivity.js';
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
export { writeSensitivityOutputs, type SensitivityOutputs } from './stats-directory.js';
export { measuredErrors, type MeasuredErrorOptions } from './measured-error.js';
export { measureModelStatistics, type ModelStatistics, type ModelStatisticsOptions, type StatisticsPlan } from './model-statistics.js';
export { SENSITIVITY_METRICS, activationSensitivityMetric, endToEndKldMetric, frobeniusMetric, kurtosisMetric, measuredErrorMetric, metricForTable, type MetricPlugin, type MetricRunOptions } from './metrics.js';
export { QuantizationErrors } from './pooled-quantize.js';
export { MetricFormatError, measureMetrics, metricFile, writeMetricTables, type MeasureMetricsOptions } from './measure-metrics.js';
export { checkMetricList, measureMetricsOn, type CalibrationSettings, type MetricModel, type MetricPlan, type MetricResults, type MetricsRunSettings } from './metric-run.js';
export {
  HessianAccumulator,
  LINEAR_INPUT,
  LayerHessians,
  createSequentialCalibration,
  floatLayerHessians,
  rmsNormRows,
  type LinearInput,
  type SequentialCalibrationOptions,
} from './hessians.js';
export { openSequentialCalibration, type OpenedSequentialCalibration, type SequentialCalibrationSource } from './sequential-calibration.js';
export {
  createKldMeasurer,
  endToEndKldTable,
  kldSumOfBatch,
  kldUnits,
  type KldMeasurer,
  type KldMeasurerOptions,
  type KldTableOptions,
  type KldUnit,
  type UnitConfigs,
  type UnitDeltas,
} from './end-to-end-kld.js';
