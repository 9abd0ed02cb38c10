import { join } from 'node:path';
import type { FnormTable, KurtosisTable, MeasuredTable, SensitivityTable } from '@layerquant/allocators';
import { STATS_FILES, saveStatsDirectory } from '@layerquant/allocators/node';

/** File names of a statistics directory: the names `layerquant allocate --stats <dir>` reads. */
export const SENSITIVITY_OUTPUT_FILES = STATS_FILES;

export interface SensitivityOutputs {
  readonly sensitivity?: SensitivityTable;
  readonly fnorm?: FnormTable;
  readonly kurtosis?: KurtosisTable;
  readonly measured?: MeasuredTable;
}

/**
 * Writes the tables present in the authors' CSV layouts with the allocators' `saveStatsDirectory` (each to a
 * temporary name, then renamed, so no partial file is left behind). Returns the paths written.
 */
export async function writeSensitivityOutputs(dir: string, outputs: SensitivityOutputs): Promise<string[]> {
  await saveStatsDirectory(dir, outputs);
  return (['sensitivity', 'fnorm', 'kurtosis', 'measured'] as const).filter((table) => outputs[table]).map((table) => join(dir, SENSITIVITY_OUTPUT_FILES[table]));
}
