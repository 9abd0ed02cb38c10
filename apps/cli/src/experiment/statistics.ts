import type { ModelStats } from '@layerquant/allocators';
import { loadStatsDirectory } from '@layerquant/allocators/node';
import { InvalidDataError, MissingFileError, PAPER_CONFIGS, configName, type LinearModule, type MatrixInfo, type MatrixKey, type QuantConfig } from '@layerquant/core';
import { measureModelStatistics, writeSensitivityOutputs, type CalibrationOrder } from '@layerquant/sensitivity';
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';

export interface StatisticsOptions {
  readonly modelDir: string;
  /** Reuse these tables (a `layerquant sensitivity` output or a paper-data directory) instead of computing. */
  readonly statsDir?: string;
  /** Where computed tables are written (and reused on the next run). */
  readonly cacheDir?: string;
  readonly needs: { readonly fnorm: boolean; readonly sensitivity: boolean; readonly kurtosis: boolean; readonly measured?: boolean };
  /** The config ladder: fnorm.csv and measured.csv are measured for these configs only (default: the paper's 12). */
  readonly configs?: readonly QuantConfig[];
  readonly calibrationPath: string;
  readonly calibrationName: string;
  readonly blocks: number;
  readonly seqlen: number;
  readonly order?: CalibrationOrder;
  readonly threads?: number;
  readonly onStep?: (step: 'fnorm' | 'sensitivity' | 'measured', done: number, total: number) => void;
  /**
   * The model's matrices and sizes (core's modelMatrixParams): when the methods need no table (uniform, a
   * layer-position rule), nothing is computed and the allocators get this list.
   */
  readonly matrices?: ReadonlyMap<MatrixKey, number>;
}

/** MatrixInfo rows of a `layer.module -> params` map. */
export function matrixList(params: ReadonlyMap<MatrixKey, number>): MatrixInfo[] {
  return [...params].map(([key, count]) => {
    const dot = key.indexOf('.');
    return Object.freeze({ key, layer: Number(key.slice(0, dot)), module: key.slice(dot + 1) as LinearModule, params: count });
  });
}

/** Whether every matrix of a table has a row for every config of the ladder. */
function coversConfigs(rows: readonly { layer: number; module: string; bits: number; groupSize: number }[] | undefined, configs: readonly QuantConfig[] | undefined): boolean {
  if (!rows) return false;
  if (!configs) return true;
  const have = new Set(rows.map((r) => `${r.layer}.${r.module}.b${r.bits}g${r.groupSize}`));
  const matrices = new Set(rows.map((r) => `${r.layer}.${r.module}`));
  for (const m of matrices) for (const c of configs) if (!have.has(`${m}.${configName(c)}`)) return false;
  return true;
}

function hasTables(stats: ModelStats, needs: StatisticsOptions['needs'], configs?: readonly QuantConfig[]): boolean {
  return (
    (!needs.fnorm || coversConfigs(stats.fnorm?.rows, configs)) &&
    (!needs.sensitivity || Boolean(stats.sensitivity)) &&
    (!needs.kurtosis || Boolean(stats.kurtosis ?? stats.fnorm?.rows[0]?.kurtosis !== undefined)) &&
    (!needs.measured || coversConfigs(stats.measured?.rows, configs))
  );
}

/**
 * The statistics the allocators read: loaded from `statsDir`, else from the cache directory of an earlier run,
 * else computed on the model (fnorm table with kurtosis over the 12 configs; activation sensitivity on the
 * calibration text) and saved there in the authors' CSV layouts.
 */
export async function ensureStatistics(options: StatisticsOptions): Promise<{ stats: ModelStats; source: string; computed: boolean }> {
  const { needs } = options;
  const nothingNeeded = !needs.fnorm && !needs.sensitivity && !needs.kurtosis && !needs.measured;
  if (nothingNeeded && options.matrices && !options.statsDir) {
    return { stats: { matrices: matrixList(options.matrices), source: 'the model (no statistics needed)' }, source: 'none needed', computed: false };
  }
  if (options.statsDir) {
    const stats = await loadStatsDirectory(options.statsDir);
    if (!hasTables(stats, needs, options.configs)) {
      throw new InvalidDataError(
        options.statsDir,
        `lacks a table the methods need (${Object.entries(needs).filter(([, v]) => v).map(([k]) => `${k}.csv`).join(', ')}${options.configs ? ` for ${options.configs.map(configName).join(',')}` : ''}); run \`layerquant sensitivity${needs.measured ? ' --measured' : ''}${options.configs ? ` --configs ${options.configs.map(configName).join(',')}` : ''}\` to make them`,
      );
    }
    return { stats, source: options.statsDir, computed: false };
  }
  let cached: ModelStats | undefined;
  if (options.cacheDir && ['fnorm', 'sensitivity', 'kurtosis', 'measured'].some((t) => existsSync(join(options.cacheDir!, `${t}.csv`)))) {
    cached = await loadStatsDirectory(options.cacheDir);
    if (hasTables(cached, needs, options.configs)) return { stats: cached, source: `${options.cacheDir} (cached)`, computed: false };
  }
  if (!existsSync(options.calibrationPath)) throw new MissingFileError(options.calibrationPath, 'calibration text not found; pass a UTF-8 text file with --calib');
  const text = await readFile(options.calibrationPath, 'utf8');
  if (text.trim().length === 0) throw new InvalidDataError(options.calibrationPath, 'is empty; calibration needs text');
  const measured = await measureModelStatistics(options.modelDir, {
    calibrationText: text,
    calibrationName: options.calibrationName,
    blocks: options.blocks,
    seqlen: options.seqlen,
    ...(options.order ? { order: options.order } : {}),
    ...(options.threads ? { threads: options.threads } : {}),
    ...(options.onStep ? { onStep: options.onStep } : {}),
    ...(options.configs ? { fnormConfigs: options.configs } : {}),
    ...(needs.measured ? { measuredConfigs: options.configs ?? PAPER_CONFIGS } : {}),
    // Only what the methods read: KurtBoost alone reads the weights' kurtosis, never the model's activations.
    ...(needs.sensitivity ? {} : { skipSensitivity: true }),
    ...(needs.fnorm ? {} : { skipFnorm: true }),
  });
  const stats: ModelStats = {
    // Tables of an earlier run the methods did not ask for again are kept in the cache.
    ...(cached ?? {}),
    ...(measured.fnorm ? { fnorm: measured.fnorm } : {}),
    ...(needs.sensitivity ? { sensitivity: measured.sensitivity } : {}),
    kurtosis: measured.kurtosis,
    ...(measured.measured ? { measured: measured.measured } : {}),
    source: options.cacheDir ?? options.modelDir,
  };
  if (options.cacheDir) await writeSensitivityOutputs(options.cacheDir, stats);
  return { stats, source: options.cacheDir ? `${options.cacheDir} (computed)` : 'computed', computed: true };
}
