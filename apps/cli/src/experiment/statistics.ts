import type { ModelStats } from '@layerquant/allocators';
import { loadStatsDirectory } from '@layerquant/allocators/node';
import { InvalidDataError } from '@layerquant/core';
import { loadDecoderBlocks } from '@layerquant/runtime';
import {
  activationSensitivity,
  calibrationBlocks,
  frobeniusTable,
  kurtosisTableFromFnorm,
  writeSensitivityOutputs,
  type CalibrationOrder,
} from '@layerquant/sensitivity';
import { loadDecoderConfig, loadTokenizer, openCheckpoint } from '@layerquant/tensor-io';
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { basename, join } from 'node:path';

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
  const config = await loadDecoderConfig(options.modelDir);
  const checkpoint = await openCheckpoint(options.modelDir);
  try {
    const fnorm = await frobeniusTable(checkpoint, undefined, { onMatrix: (done, total) => options.onStep?.('fnorm', done, total) });
    const tokenizer = await loadTokenizer(options.modelDir);
    const text = await readFile(options.calibrationPath, 'utf8');
    if (text.trim().length === 0) throw new InvalidDataError(options.calibrationPath, 'is empty; calibration needs text');
    const calibration = calibrationBlocks(text, tokenizer, {
      blocks: options.blocks,
      seqlen: options.seqlen,
      source: options.calibrationName,
      ...(options.order ? { order: options.order } : {}),
    });
    const blocks = await loadDecoderBlocks(checkpoint, config, options.threads ? { threads: options.threads } : {});
    let sensitivity;
    try {
      sensitivity = await activationSensitivity(blocks, calibration, {
        dataset: options.calibrationName,
        model: basename(options.modelDir),
        onLayer: (layer, layers) => options.onStep?.('sensitivity', layer + 1, layers),
      });
    } finally {
      await blocks.dispose();
    }
    const stats: ModelStats = { fnorm, sensitivity, kurtosis: kurtosisTableFromFnorm(fnorm), source: options.cacheDir ?? options.modelDir };
    if (options.cacheDir) await writeSensitivityOutputs(options.cacheDir, stats);
    return { stats, source: options.cacheDir ? `${options.cacheDir} (computed)` : 'computed', computed: true };
  } finally {
    await checkpoint.close();
  }
}
