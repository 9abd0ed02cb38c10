import { existsSync, statSync } from 'node:fs';
import { readFile, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { InvalidDataError, MissingFileError } from '@layerquant/core';
import {
  parseFnormCsv,
  parseKurtosisCsv,
  parseMeasuredCsv,
  parseSensitivityCsv,
  BUILTIN_TABLES,
  STATS_FILES,
  tableFile,
  type BuiltinTableName,
  type ModelStats,
} from './stats.js';
import { validateStats } from './validate-stats.js';

/**
 * Node-only reading of statistics directories (the main entry stays browser-safe; tables are written through
 * their metrics' `format`, @layerquant/sensitivity's writeMetricTables).
 *
 * A statistics directory holds `fnorm.csv`, `sensitivity.csv` and optionally `kurtosis.csv`, `measured.csv` (the
 * layout `layerquant sensitivity` writes and the one of the authors' paper-data folders); the authors' per-model
 * names `fnorm-<model>.csv`, `sensitivity-<model>.csv`, `kurtosis-<model>.csv` are accepted when they are the only one.
 */
async function findTable(dir: string, names: readonly string[], stem: string): Promise<string | undefined> {
  for (const name of names) if (existsSync(join(dir, name))) return join(dir, name);
  const matches = (await readdir(dir)).filter((f) => f.startsWith(`${stem}-`) && f.endsWith('.csv'));
  if (matches.length > 1) {
    throw new InvalidDataError(dir, `several ${stem} tables (${matches.join(', ')}); keep one or name it ${stem}.csv`);
  }
  return matches.length === 1 ? join(dir, matches[0]!) : undefined;
}

/** How a table other than the built-ins is read from a directory: a metric plug-in's `table` and `parse`. */
export interface TableReader {
  readonly table: string;
  readonly parse?: (text: string, source?: string) => unknown;
}

/**
 * Loads the statistics tables of a directory: the built-in tables, and `<table>.csv` of every reader given (the
 * metric plug-ins of an app's registry) through its `parse`. Throws MissingFileError when it holds none and
 * InvalidDataError when the built-in tables do not cover the same whole layers and configs (validateStats; check
 * them against a model with `validateStats(stats, model)`).
 */
export async function loadStatsDirectory(dir: string, readers: readonly TableReader[] = []): Promise<ModelStats> {
  if (!existsSync(dir) || !statSync(dir).isDirectory()) {
    throw new MissingFileError(dir, 'is not a directory; pass the output directory of `layerquant sensitivity` or a paper-data directory (fnorm.csv, sensitivity.csv)');
  }
  const fnormPath = await findTable(dir, [STATS_FILES.fnorm], 'fnorm');
  const sensitivityPath = await findTable(dir, [STATS_FILES.sensitivity], 'sensitivity');
  const kurtosisPath = await findTable(dir, [STATS_FILES.kurtosis], 'kurtosis');
  const measuredPath = existsSync(join(dir, STATS_FILES.measured)) ? join(dir, STATS_FILES.measured) : undefined;
  const read = (path: string): Promise<string> => readFile(path, 'utf8');
  const others: Record<string, unknown> = {};
  for (const reader of readers) {
    const path = join(dir, tableFile(reader.table));
    if (BUILTIN_TABLES.includes(reader.table as BuiltinTableName) || !reader.parse || !existsSync(path)) continue;
    others[reader.table] = reader.parse(await read(path), path);
  }
  if (!fnormPath && !sensitivityPath && !kurtosisPath && !measuredPath && Object.keys(others).length === 0) {
    throw new MissingFileError(dir, 'holds no statistics: expected fnorm.csv, sensitivity.csv and/or kurtosis.csv (run `layerquant sensitivity` to make them)');
  }
  const stats: ModelStats = Object.freeze({
    source: dir,
    ...others,
    ...(fnormPath ? { fnorm: parseFnormCsv(await read(fnormPath), fnormPath) } : {}),
    ...(sensitivityPath ? { sensitivity: parseSensitivityCsv(await read(sensitivityPath), sensitivityPath) } : {}),
    ...(kurtosisPath ? { kurtosis: parseKurtosisCsv(await read(kurtosisPath), kurtosisPath) } : {}),
    ...(measuredPath ? { measured: parseMeasuredCsv(await read(measuredPath), measuredPath) } : {}),
  });
  validateStats(stats);
  return stats;
}
