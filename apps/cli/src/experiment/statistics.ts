import type { ModelStats } from '@layerquant/allocators';
import { loadStatsDirectory } from '@layerquant/allocators/node';
import { InvalidDataError, MissingFileError } from '@layerquant/core';
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
  readonly needs: { readonly fnorm: boolean; readonly sensitivity: boolean; readonly kurtosis: boolean };
  readonly calibrationPath: string;
  readonly calibrationName: string;
  readonly blocks: number;
  readonly seqlen: number;
  readonly order?: CalibrationOrder;
  readonly threads?: number;
  readonly onStep?: (step: 'fnorm' | 'sensitivity', done: number, total: number) => void;
}

function hasTables(stats: ModelStats, needs: StatisticsOptions['needs']): boolean {
  return (!needs.fnorm || Boolean(stats.fnorm)) && (!needs.sensitivity || Boolean(stats.sensitivity)) && (!needs.kurtosis || Boolean(stats.kurtosis ?? stats.fnorm?.rows[0]?.kurtosis !== undefined));
}

/**
 * The statistics the allocators read: loaded from `statsDir`, else from the cache directory of an earlier run,
 * else computed on the model (fnorm table with kurtosis over the 12 configs; activation sensitivity on the
 * calibration text) and saved there in the authors' CSV layouts.
 */
export async function ensureStatistics(options: StatisticsOptions): Promise<{ stats: ModelStats; source: string; computed: boolean }> {
  const { needs } = options;
  if (options.statsDir) {
    const stats = await loadStatsDirectory(options.statsDir);
    if (!hasTables(stats, needs)) {
      throw new InvalidDataError(options.statsDir, `lacks a table the methods need (${Object.entries(needs).filter(([, v]) => v).map(([k]) => `${k}.csv`).join(', ')}); run \`layerquant sensitivity\` to make them`);
    }
    return { stats, source: options.statsDir, computed: false };
  }
  if (options.cacheDir && existsSync(join(options.cacheDir, 'fnorm.csv')) && existsSync(join(options.cacheDir, 'sensitivity.csv'))) {
    const stats = await loadStatsDirectory(options.cacheDir);
    if (hasTables(stats, needs)) return { stats, source: `${options.cacheDir} (cached)`, computed: false };
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
  });
  const stats: ModelStats = { ...(measured.fnorm ? { fnorm: measured.fnorm } : {}), sensitivity: measured.sensitivity, kurtosis: measured.kurtosis, source: options.cacheDir ?? options.modelDir };
  if (options.cacheDir) await writeSensitivityOutputs(options.cacheDir, stats);
  return { stats, source: options.cacheDir ? `${options.cacheDir} (computed)` : 'computed', computed: true };
}
