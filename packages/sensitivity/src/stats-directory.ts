import type { FnormTable, KurtosisTable, MeasuredTable, SensitivityTable } from '@layerquant/stats';
import { writeMetricTables } from './measure-metrics.js';
import { SENSITIVITY_METRICS } from './metrics.js';

export interface SensitivityOutputs {
  readonly sensitivity?: SensitivityTable;
  readonly fnorm?: FnormTable;
  readonly kurtosis?: KurtosisTable;
  readonly measured?: MeasuredTable;
}

/**
 * Writes the built-in tables present in the authors' CSV layouts, all of them swapped in at once (writeMetricTables
 * through the built-in metrics' `format`): never a new sensitivity.csv beside a kurtosis.csv of an interrupted
 * earlier run; tables this run does not write (--skip-fnorm) are left as they are. Returns the paths written.
 */
export async function writeSensitivityOutputs(dir: string, outputs: SensitivityOutputs): Promise<string[]> {
  return writeMetricTables(dir, SENSITIVITY_METRICS, outputs as Readonly<Record<string, unknown>>);
}
