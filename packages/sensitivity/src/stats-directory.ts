import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import {
  formatFnormCsv,
  formatKurtosisCsv,
  formatSensitivityCsv,
  type FnormTable,
  type KurtosisTable,
  type SensitivityTable,
} from '@layerquant/allocators';
import { writeTextAtomic } from '@layerquant/tensor-io';

/** File names of a statistics directory, the names `layerquant allocate --stats <dir>` reads. */
export const SENSITIVITY_OUTPUT_FILES = Object.freeze({ sensitivity: 'sensitivity.csv', fnorm: 'fnorm.csv', kurtosis: 'kurtosis.csv' });

export interface SensitivityOutputs {
  readonly sensitivity?: SensitivityTable;
  readonly fnorm?: FnormTable;
  readonly kurtosis?: KurtosisTable;
}

/**
 * Writes the tables present in the authors' CSV layouts (each to a temporary name, then renamed, so no partial
 * file is left behind). Returns the paths written.
 */
export async function writeSensitivityOutputs(dir: string, outputs: SensitivityOutputs): Promise<string[]> {
  await mkdir(dir, { recursive: true });
  const written: string[] = [];
  const write = async (name: string, text: string) => {
    const path = join(dir, name);
    await writeTextAtomic(path, text);
    written.push(path);
  };
  if (outputs.sensitivity) await write(SENSITIVITY_OUTPUT_FILES.sensitivity, formatSensitivityCsv(outputs.sensitivity));
  if (outputs.fnorm) await write(SENSITIVITY_OUTPUT_FILES.fnorm, formatFnormCsv(outputs.fnorm));
  if (outputs.kurtosis) await write(SENSITIVITY_OUTPUT_FILES.kurtosis, formatKurtosisCsv(outputs.kurtosis));
  return written;
}
