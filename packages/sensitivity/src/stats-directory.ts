import { join } from 'node:path';
import type { FnormTable, KurtosisTable, MeasuredTable, SensitivityTable } from '@layerquant/stats';
import { STATS_FILES, saveStatsDirectory } from '@layerquant/stats/node';
import { writeFileSet } from '@layerquant/tensor-io';

/** File names of a statistics directory: the names `layerquant allocate --stats <dir>` reads. */
export const SENSITIVITY_OUTPUT_FILES = STATS_FILES;

export interface SensitivityOutputs {
  readonly sensitivity?: SensitivityTable;
  readonly fnorm?: FnormTable;
  readonly kurtosis?: KurtosisTable;
  readonly measured?: MeasuredTable;
}

/**
 * Writes the tables present in the authors' CSV layouts with the allocators' `saveStatsDirectory`, all of them
 * swapped in at once by renames, so no partial file or mixed set is left behind. Returns the paths written.
 */
export async function writeSensitivityOutputs(dir: string, outputs: SensitivityOutputs): Promise<string[]> {
  // The tables of one run go in together (tensor-io's writeFileSet): never a new sensitivity.csv beside a
  // kurtosis.csv of an interrupted earlier run. Tables this run does not write (--skip-fnorm) are left as they are.
  await writeFileSet(dir, (staging) => saveStatsDirectory(staging, outputs));
  return (['sensitivity', 'fnorm', 'kurtosis', 'measured'] as const).filter((table) => outputs[table]).map((table) => join(dir, SENSITIVITY_OUTPUT_FILES[table]));
}
