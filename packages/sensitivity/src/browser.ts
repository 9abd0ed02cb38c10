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
// Activation sensitivity runs a model's decoder blocks (the runtime's, on whatever onnxruntime backend the page maps):
// nothing here reads files, so a page measures SensiBoost's table with the code the CLI runs.
export { DEFAULT_SENSITIVITY_CONFIG, activationSensitivity, type ActivationSensitivityOptions } from './activation-sensitivity.js';
export { DEFAULT_CALIBRATION_BLOCKS, DEFAULT_SEQLEN, calibrationBlocks, type CalibrationBlocks, type CalibrationOptions } from './calibration.js';
// GPTQ's sequential layer pass (each matrix's input Hessian with the matrices before it quantized) runs the same
// decoder blocks: a page quantizes with a calibrated quantizer by the CLI's code.
export { createSequentialCalibration, type SequentialCalibrationOptions } from './hessians.js';
// The metric plug-ins and the one measurement of them (what `layerquant sensitivity` runs on a model directory), on a
// model a page read itself.
export { SENSITIVITY_METRICS, activationSensitivityMetric, endToEndKldMetric, frobeniusMetric, kurtosisMetric, measuredErrorMetric, metricForTable, type MetricPlugin, type MetricRunOptions } from './metrics.js';
export { checkMetricList, measureMetricsOn, type CalibrationSettings, type MetricModel, type MetricPlan, type MetricResults, type MetricsRunSettings } from './metric-run.js';
