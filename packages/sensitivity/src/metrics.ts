import { PAPER_CONFIGS, type QuantConfig, type SensitivityMetric } from '@layerquant/core';
import type { FnormTable, KurtosisTable, MeasuredTable, SensitivityTable } from '@layerquant/allocators';
import type { DecoderBlocks } from '@layerquant/runtime';
import { activationSensitivity, type ActivationSensitivityOptions } from './activation-sensitivity.js';
import type { CalibrationBlocks } from './calibration.js';
import { measuredErrors, type MeasuredErrorOptions } from './measured-error.js';
import { frobeniusTable, kurtosisTable, type FrobeniusTableOptions, type MatrixSource } from './frobenius-table.js';

/** The three measurements as plug-ins (`{ id, measure }`) for an app's registry; nothing registers on import. */
export const activationSensitivityMetric = Object.freeze<
  SensitivityMetric<{ readonly model: DecoderBlocks; readonly calibration: CalibrationBlocks | ArrayLike<number> }, SensitivityTable, ActivationSensitivityOptions>
>({
  id: 'activation-sensitivity',
  measure: (input, options) => activationSensitivity(input.model, input.calibration, options),
});

export const kurtosisMetric = Object.freeze<SensitivityMetric<MatrixSource, KurtosisTable, Record<string, never>>>({
  id: 'kurtosis',
  measure: (source) => kurtosisTable(source),
});

export const frobeniusMetric = Object.freeze<SensitivityMetric<MatrixSource, FnormTable, FrobeniusTableOptions & { readonly configs?: readonly QuantConfig[] }>>({
  id: 'fnorm',
  measure: (source, options) => frobeniusTable(source, options.configs ?? PAPER_CONFIGS, options),
});

/** layerquant's measured block-output error of every matrix alone at every config (what `measured` minimises). */
export const measuredErrorMetric = Object.freeze<
  SensitivityMetric<{ readonly model: DecoderBlocks; readonly calibration: CalibrationBlocks | ArrayLike<number> }, MeasuredTable, MeasuredErrorOptions>
>({
  id: 'measured',
  measure: (input, options) => measuredErrors(input.model, input.calibration, options),
});

export const SENSITIVITY_METRICS = Object.freeze([activationSensitivityMetric, kurtosisMetric, frobeniusMetric, measuredErrorMetric] as const);
