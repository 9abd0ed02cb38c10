import type { ModelStats } from '@layerquant/allocators';
import { loadStatsDirectory } from '@layerquant/allocators/node';
import { InvalidDataError, MissingFileError, PAPER_CONFIGS, configName, type LinearModule, type MatrixInfo, type MatrixKey, type OptionValue, type QuantConfig, type Quantizer } from '@layerquant/core';
import { hqqQuantizer } from '@layerquant/quantizers';
import { DEFAULT_SENSITIVITY_CONFIG, measureModelStatistics, writeSensitivityOutputs, type CalibrationOrder } from '@layerquant/sensitivity';
import { removeStaleTemporaries, writeDirectoryAtomic, writeTextAtomic } from '@layerquant/tensor-io';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describeChanges, fileContentHash, modelContentHash, settingsKey } from './keys.js';
import { quantizerSettings } from './plugins.js';

/** The quantizer of the fnorm table (the authors' HQQ error) and of every cell unless `experiment --quantizer`, with its solver settings. */
export const QUANTIZER_SETTINGS = Object.freeze({ id: hqqQuantizer.id, solver: hqqQuantizer.solver });

/** What computed statistics depend on. */
export interface ComputedStatsSettings {
  readonly [key: string]: unknown;
  readonly kind: 'computed';
  readonly model: string;
  readonly calibration: string;
  readonly calibrationName: string;
  readonly blocks: number;
  readonly seqlen: number;
  readonly order: string;
  readonly sensitivityConfigs: unknown;
  /** The config ladder of the fnorm table (and of measured.csv when it is measured). */
  readonly fnormConfigs: readonly QuantConfig[];
  /** The configs of the measured block-error table, or null where no method needs it. */
  readonly measuredConfigs: readonly QuantConfig[] | null;
  /** What measured.csv's error is (absent in caches of the absolute MSE, which are then not reused). */
  readonly measuredError?: 'relative to the residual stream';
  readonly quantizer: unknown;
}

export function computedStatsSettings(options: {
  model: string;
  calibration: string;
  calibrationName: string;
  blocks: number;
  seqlen: number;
  order?: string;
  fnormConfigs?: readonly QuantConfig[];
  measured?: boolean;
  /** Measure activation sensitivity (default true; false: no method reads it, the list of its configs is empty). */
  sensitivity?: boolean;
  /** Measure the fnorm table (default true; false: its ladder is empty, kurtosis is read on its own). */
  fnorm?: boolean;
  /** The quantizer the tables are measured with, as its settings (`quantizerSettings`; default HQQ, QUANTIZER_SETTINGS). */
  quantizer?: Readonly<Record<string, unknown>>;
}): ComputedStatsSettings {
  const ladder = options.fnormConfigs ?? PAPER_CONFIGS;
  return {
    kind: 'computed',
    model: options.model,
    calibration: options.calibration,
    calibrationName: options.calibrationName,
    blocks: options.blocks,
    seqlen: options.seqlen,
    order: options.order ?? 'default',
    sensitivityConfigs: options.sensitivity === false ? [] : [DEFAULT_SENSITIVITY_CONFIG],
    fnormConfigs: options.fnorm === false ? [] : ladder,
    measuredConfigs: options.measured ? ladder : null,
    ...(options.measured ? { measuredError: 'relative to the residual stream' as const } : {}),
    quantizer: options.quantizer ?? QUANTIZER_SETTINGS,
  };
}

export type StatisticsStep = 'fnorm' | 'sensitivity' | 'measured';

/** Computes the tables (in process by default; the queue coordinator passes one that runs them as jobs). */
export type ComputeStatistics = (settings: ComputedStatsSettings, calibrationText: string) => Promise<ModelStats>;

export interface StatisticsOptions {
  readonly modelDir: string;
  /** Reuse these tables (a `layerquant sensitivity` output or a paper-data directory) instead of computing. */
  readonly statsDir?: string;
  /** Where computed tables are cached, one directory per settings key: `<cacheDir>/<key>/`. */
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
  readonly onStep?: (step: StatisticsStep, done: number, total: number) => void;
  /** Lines for stderr: what was reused and why, what was not and why. */
  readonly onNote?: (line: string) => void;
  readonly compute?: ComputeStatistics;
  /**
   * The model's matrices and sizes (core's modelMatrixParams): when the methods need no table (uniform, a
   * layer-position rule), nothing is computed and the allocators get this list.
   */
  readonly matrices?: ReadonlyMap<MatrixKey, number>;
  /**
   * The quantizer the tables that quantize (fnorm, activation sensitivity, measured) are measured with, and the
   * options it was configured with (part of the settings key); default HQQ. A calibrated one (GPTQ) quantizes each
   * matrix with the Hessian of its float inputs on the calibration blocks.
   */
  readonly quantizer?: { readonly quantizer: Quantizer; readonly options: Readonly<Record<string, OptionValue>> };
}

/** MatrixInfo rows of a `layer.module -> params` map. */
export function matrixList(params: ReadonlyMap<MatrixKey, number>): MatrixInfo[] {
  return [...params].map(([key, count]) => {
    const dot = key.indexOf('.');
    return Object.freeze({ key, layer: Number(key.slice(0, dot)), module: key.slice(dot + 1) as LinearModule, params: count });
  });
}

export interface ResolvedStatistics {
  readonly stats: ModelStats;
  /** Where they came from, for reports. */
  readonly source: string;
  /** Settings key of the statistics: part of every method cell's key. */
  readonly key: string;
  readonly computed: boolean;
}

const SETTINGS_FILE = 'settings.json';

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

/** The statistics of a model measured in this process (the default `compute`). */
export function measureInProcess(modelDir: string, options: Pick<StatisticsOptions, 'order' | 'threads' | 'onStep' | 'quantizer'>): ComputeStatistics {
  return async (settings, calibrationText) => {
    const measured = await measureModelStatistics(modelDir, {
      calibrationText,
      calibrationName: settings.calibrationName,
      blocks: settings.blocks,
      seqlen: settings.seqlen,
      ...(options.order ? { order: options.order } : {}),
      ...(options.threads ? { threads: options.threads } : {}),
      ...(options.onStep ? { onStep: options.onStep } : {}),
      ...(options.quantizer ? { quantizer: options.quantizer.quantizer } : {}),
      fnormConfigs: settings.fnormConfigs,
      ...(settings.measuredConfigs ? { measuredConfigs: settings.measuredConfigs } : {}),
      // An empty list of configs: that table is not measured (no method reads it).
      ...(Array.isArray(settings.sensitivityConfigs) && settings.sensitivityConfigs.length === 0 ? { skipSensitivity: true } : {}),
      ...(settings.fnormConfigs.length === 0 ? { skipFnorm: true } : {}),
    });
    return {
      ...(measured.fnorm ? { fnorm: measured.fnorm } : {}),
      ...(measured.sensitivity.rows.length > 0 ? { sensitivity: measured.sensitivity } : {}),
      kurtosis: measured.kurtosis,
      ...(measured.measured ? { measured: measured.measured } : {}),
      source: modelDir,
    };
  };
}

/** Settings of the cached statistics directories under `cacheDir` (key -> settings). */
function cachedSettings(cacheDir: string): Map<string, Record<string, unknown>> {
  const out = new Map<string, Record<string, unknown>>();
  if (!existsSync(cacheDir)) return out;
  for (const name of readdirSync(cacheDir)) {
    const file = join(cacheDir, name, SETTINGS_FILE);
    if (!existsSync(file)) continue;
    try {
      out.set(name, JSON.parse(readFileSync(file, 'utf8')) as Record<string, unknown>);
    } catch {
      // A damaged settings.json: that directory is not reused (a new key directory is written instead).
    }
  }
  return out;
}

/** The key of a --stats directory: the content hashes of its tables. */
async function directoryKey(dir: string): Promise<string> {
  if (!existsSync(dir) || !statSync(dir).isDirectory()) return settingsKey({ kind: 'directory', dir });
  const files: Record<string, string> = {};
  for (const name of readdirSync(dir).filter((n) => n.endsWith('.csv')).sort()) files[name] = await fileContentHash(join(dir, name));
  return settingsKey({ kind: 'directory', files });
}

/**
 * The statistics the allocators read: loaded from `statsDir`, else from `<cacheDir>/<key>` of an earlier run with
 * the same settings (model content, calibration text, blocks, seqlen, configs, quantizer), else computed and saved
 * there in the authors' CSV layouts (written to a temporary directory, then renamed).
 */
export async function ensureStatistics(options: StatisticsOptions): Promise<ResolvedStatistics> {
  const { needs } = options;
  const note = options.onNote ?? (() => undefined);
  const nothingNeeded = !needs.fnorm && !needs.sensitivity && !needs.kurtosis && !needs.measured;
  if (nothingNeeded && options.matrices && !options.statsDir) {
    note('statistics: none needed (the methods read no table)');
    return { stats: { matrices: matrixList(options.matrices), source: 'the model (no statistics needed)' }, source: 'none needed', key: 'none', computed: false };
  }
  if (options.statsDir) {
    const stats = await loadStatsDirectory(options.statsDir);
    if (!hasTables(stats, needs, options.configs)) {
      throw new InvalidDataError(
        options.statsDir,
        `lacks a table the methods need (${Object.entries(needs).filter(([, v]) => v).map(([k]) => `${k}.csv`).join(', ')}${options.configs ? ` for ${options.configs.map(configName).join(',')}` : ''}); run \`layerquant sensitivity${needs.measured ? ' --measured' : ''}${options.configs ? ` --configs ${options.configs.map(configName).join(',')}` : ''}\` to make them`,
      );
    }
    return { stats, source: options.statsDir, key: await directoryKey(options.statsDir), computed: false };
  }
  if (!existsSync(options.calibrationPath)) throw new MissingFileError(options.calibrationPath, 'calibration text not found; pass a UTF-8 text file with --calib');
  const text = await readFile(options.calibrationPath, 'utf8');
  if (text.trim().length === 0) throw new InvalidDataError(options.calibrationPath, 'is empty; calibration needs text');
  const settings = computedStatsSettings({
    model: await modelContentHash(options.modelDir),
    calibration: await fileContentHash(options.calibrationPath),
    calibrationName: options.calibrationName,
    blocks: options.blocks,
    seqlen: options.seqlen,
    ...(options.order ? { order: options.order } : {}),
    ...(options.configs ? { fnormConfigs: options.configs } : {}),
    measured: Boolean(needs.measured),
    // Only what the methods read: KurtBoost alone reads the weights' kurtosis, never the model's activations.
    sensitivity: needs.sensitivity,
    fnorm: needs.fnorm,
    ...(options.quantizer ? { quantizer: quantizerSettings(options.quantizer.quantizer, options.quantizer.options) } : {}),
  });
  const key = settingsKey(settings);
  if (options.cacheDir) {
    const dir = join(options.cacheDir, key);
    if (existsSync(join(dir, SETTINGS_FILE))) {
      const stats = await loadStatsDirectory(dir);
      if (hasTables(stats, needs, options.configs)) {
        note(`statistics: reusing ${dir} (same model content, calibration text, blocks, seqlen, configs and quantizer)`);
        return { stats, source: `${dir} (cached)`, key, computed: false };
      }
    }
    const others = cachedSettings(options.cacheDir);
    for (const [otherKey, other] of others) {
      if (otherKey !== key) note(`statistics: not reusing ${join(options.cacheDir, otherKey)}: other settings (${describeChanges(other, settings).join('; ')})`);
    }
    if (existsSync(join(options.cacheDir, 'fnorm.csv'))) note(`statistics: not reusing ${options.cacheDir}/*.csv: written by an earlier layerquant without settings; computing`);
  }
  const compute = options.compute ?? measureInProcess(options.modelDir, options);
  const measured = await compute(settings, text);
  const stats: ModelStats = { ...measured, source: options.cacheDir ? join(options.cacheDir, key) : options.modelDir };
  if (!options.cacheDir) return { stats, source: 'computed', key, computed: true };
  await mkdir(options.cacheDir, { recursive: true });
  removeStaleTemporaries(options.cacheDir);
  const dir = join(options.cacheDir, key);
  await writeDirectoryAtomic(dir, async (tmp) => {
    await writeSensitivityOutputs(tmp, stats);
    await writeTextAtomic(join(tmp, SETTINGS_FILE), `${JSON.stringify(settings, null, 1)}\n`);
  });
  // Read back what was written, so a first run, a resumed run and queue workers allocate from the same numbers.
  return { stats: await loadStatsDirectory(dir), source: `${dir} (computed)`, key, computed: true };
}
