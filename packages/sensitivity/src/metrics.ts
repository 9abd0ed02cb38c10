import { PAPER_CONFIGS, type QuantConfig, type SensitivityMetric } from '@layerquant/core';
import type { FnormTable, KurtosisTable, MeasuredTable, SensitivityTable } from '@layerquant/stats';
import type { DecoderBlocks } from '@layerquant/runtime';
import { activationSensitivity, type ActivationSensitivityOptions } from './activation-sensitivity.js';
import type { CalibrationBlocks } from './calibration.js';
import { measuredErrors, type MeasuredErrorOptions } from './measured-error.js';
import { frobeniusTable, kurtosisTable, type FrobeniusTableOptions, type MatrixSource } from './frobenius-table.js';

/**
 * A metric plug-in: a SensitivityMetric that says which statistics table it fills (the name allocators ask for in
 * `tablesNeeded`), whether it reads only the weights or runs the model on calibration text, and what it is.
 */
export interface MetricPlugin<Input = any, Output = unknown, Options = any> extends SensitivityMetric<Input, Output, Options> {
  readonly table: string;
  readonly input: 'weights' | 'activations';
  readonly description: string;
}

/** The measurements as plug-ins (`{ id, measure }`) for an app's registry; nothing registers on import. */
export const activationSensitivityMetric = Object.freeze<
  MetricPlugin<{ readonly model: DecoderBlocks; readonly calibration: CalibrationBlocks | ArrayLike<number> }, SensitivityTable, ActivationSensitivityOptions>
>({
  id: 'activation-sensitivity',
  table: 'sensitivity',
  input: 'activations',
  description: "relative change of each block's output when one part of it is quantized (the authors' SensiBoost statistic)",
  measure: (input, options) => activationSensitivity(input.model, input.calibration, options),
});

export const kurtosisMetric = Object.freeze<MetricPlugin<MatrixSource, KurtosisTable, Record<string, never>>>({
  id: 'kurtosis',
  table: 'kurtosis',
  input: 'weights',
  description: 'excess kurtosis of each weight matrix (KurtBoost; reads only the weights)',
  measure: (source) => kurtosisTable(source),
});

export const frobeniusMetric = Object.freeze<MetricPlugin<MatrixSource, FnormTable, FrobeniusTableOptions & { readonly configs?: readonly QuantConfig[] }>>({
  id: 'fnorm',
  table: 'fnorm',
  input: 'weights',
  description: 'Frobenius norm of the dequantization error of each matrix at every config (MXQ)',
  measure: (source, options) => frobeniusTable(source, options.configs ?? PAPER_CONFIGS, options),
});

/** layerquant's measured block-output error of every matrix alone at every config (what `measured` minimises). */
export const measuredErrorMetric = Object.freeze<
  MetricPlugin<{ readonly model: DecoderBlocks; readonly calibration: CalibrationBlocks | ArrayLike<number> }, MeasuredTable, MeasuredErrorOptions>
>({
  id: 'measured',
  table: 'measured',
  input: 'activations',
  description: "block-output error of every matrix alone at every config (layerquant's measured allocator)",
  measure: (input, options) => measuredErrors(input.model, input.calibration, options),
});

export const SENSITIVITY_METRICS: readonly MetricPlugin[] = Object.freeze([activationSensitivityMetric, kurtosisMetric, frobeniusMetric, measuredErrorMetric]);

/** The metric of a registry (or list) that fills `table`; undefined when none does. */
export function metricForTable(metrics: readonly MetricPlugin[], table: string): MetricPlugin | undefined {
  return metrics.find((m) => m.table === table);
}
