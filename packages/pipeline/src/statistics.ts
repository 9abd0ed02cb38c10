import { BUILTIN_TABLES, hasTable, rowConfig, tableFile, type ModelStats } from '@layerquant/allocators';
import { loadStatsDirectory } from '@layerquant/allocators/node';
import { InvalidDataError, InvalidOptionError, MissingFileError, PAPER_CONFIGS, configName, isLinearModule, matrixKey, type EmbeddingUnit, type LinearModule, type MatrixInfo, type MatrixKey, type OptionValue, type QuantConfig, type Quantizer, type UnitModule, type ZeroKind, moduleLadder, type ModuleLadders } from '@layerquant/core';
import { hqqQuantizer } from '@layerquant/quantizers';
import { DEFAULT_SENSITIVITY_CONFIG, SENSITIVITY_METRICS, measureMetrics, writeMetricTables, type CalibrationOrder, type MetricPlugin } from '@layerquant/sensitivity';
import { readTextFile, removeStaleTemporaries, writeDirectoryAtomic, writeTextAtomic } from '@layerquant/tensor-io';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { describeChanges, fileContentHash, modelContentHash, settingsKey } from './keys.js';
import { quantizerSettings, type QuantizerChoice } from './plugins.js';

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
  /** Plug-in tables and the metric that measures each (absent when only built-in tables are measured). */
  readonly tables?: Readonly<Record<string, string>>;
  /** The embedding units fnorm.csv and measured.csv cover too, with their ladders (a shipped format's); absent: none. */
  readonly embeddingConfigs?: EmbeddingLadders;
  /** Linear modules measured at fewer configs than the ladder (a shipped format's); absent: every module at every config. */
  readonly moduleConfigs?: ModuleLadders;
}

/** Per embedding unit, the configs its rows are measured at. */
export type EmbeddingLadders = Partial<Readonly<Record<EmbeddingUnit, readonly QuantConfig[]>>>;

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
  /** Metric plug-ins of tables other than the built-ins (their ids are part of the key; none: the key is unchanged). */
  metrics?: readonly { readonly id: string; readonly table: string }[];
  /** The embedding units the per-config tables cover too (absent: the linear matrices only, as the paper). */
  embeddingConfigs?: EmbeddingLadders;
  /** Linear modules measured at fewer configs than the ladder (absent or empty: the key is unchanged). */
  moduleConfigs?: ModuleLadders;
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
    ...(options.metrics && options.metrics.length > 0 ? { tables: Object.fromEntries(options.metrics.map((m) => [m.table, m.id])) } : {}),
    ...(options.embeddingConfigs && Object.keys(options.embeddingConfigs).length > 0 ? { embeddingConfigs: options.embeddingConfigs } : {}),
    ...(options.moduleConfigs && Object.keys(options.moduleConfigs).length > 0 ? { moduleConfigs: options.moduleConfigs } : {}),
  };
}

/** A table being measured (`fnorm`, `sensitivity`, a metric plug-in's table), for progress. */
export type StatisticsStep = string;

/**
 * How the tables of one run are measured, as plain data: what a queue job carries to a worker, which measures them
 * with the same `measureTables` call as this process.
 */
export interface StatisticsMeasure {
  readonly calibrationName: string;
  readonly blocks: number;
  readonly seqlen: number;
  readonly order?: CalibrationOrder;
  /** The config ladder of per-config tables (fnorm, measured). */
  readonly configs: readonly QuantConfig[];
  /** The configs of the activation-sensitivity passes. */
  readonly sensitivityConfigs: readonly QuantConfig[];
  /** The embedding units the per-config tables cover too, each at its own ladder (absent: none). */
  readonly embeddingConfigs?: EmbeddingLadders;
  /** Linear modules measured at fewer configs than `configs` (absent: none). */
  readonly moduleConfigs?: ModuleLadders;
  /** The quantizer the tables that quantize are measured with, by id and options (absent: HQQ). */
  readonly quantizer?: QuantizerChoice;
}

/** One run's tables to measure: the metrics that fill them, how, and the key of their settings. */
export interface StatisticsRequest {
  readonly modelDir: string;
  /** The settings key of the tables (their cache directory's name; queue job ids). */
  readonly key: string;
  readonly settings: ComputedStatsSettings;
  /** One metric plug-in per table needed, in registry order. */
  readonly metrics: readonly MetricPlugin[];
  readonly measure: StatisticsMeasure;
  readonly calibrationText: string;
  /**
   * The quantizer of the measure is calibrated (GPTQ): the weight metrics read the calibration too, through one layer
   * pass, so they are measured whole like the activation metrics, never a layer at a time.
   */
  readonly calibrated?: boolean;
}

/** Measures the tables of a request (in process by default; the queue coordinator passes one that spreads them over workers). */
export type ComputeStatistics = (request: StatisticsRequest) => Promise<Readonly<Record<string, unknown>>>;

/**
 * The one measurement of statistics tables: `measureMetrics` of @layerquant/sensitivity over the metrics, with the
 * run's settings; `layers` restricts weight metrics to those layers' matrices (a queue job's share). Returns the
 * tables by name.
 */
export async function measureTables(
  modelDir: string,
  metrics: readonly MetricPlugin[],
  options: StatisticsMeasure & {
    readonly calibrationText?: string;
    readonly threads?: number;
    readonly layers?: readonly number[];
    readonly onStep?: (step: StatisticsStep, done: number, total: number) => void;
    /** The quantizer `measure.quantizer` names, resolved from the caller's registries (required when it names one). */
    readonly resolvedQuantizer?: Quantizer;
  },
): Promise<Readonly<Record<string, unknown>>> {
  if (options.quantizer && options.resolvedQuantizer?.id !== options.quantizer.id) {
    throw new InvalidOptionError('quantizer', `the statistics are measured with "${options.quantizer.id}" but no such quantizer was resolved; resolve it with quantizerOf`);
  }
  const results = await measureMetrics(modelDir, metrics, {
    ...(options.calibrationText === undefined ? {} : { calibrationText: options.calibrationText }),
    calibrationName: options.calibrationName,
    blocks: options.blocks,
    seqlen: options.seqlen,
    ...(options.order ? { order: options.order } : {}),
    configs: options.configs,
    sensitivityConfigs: options.sensitivityConfigs,
    ...(options.embeddingConfigs ? { embeddingConfigs: options.embeddingConfigs } : {}),
    ...(options.moduleConfigs ? { moduleConfigs: options.moduleConfigs } : {}),
    ...(options.threads ? { threads: options.threads } : {}),
    ...(options.layers ? { layers: options.layers } : {}),
    ...(options.resolvedQuantizer ? { quantizer: options.resolvedQuantizer } : {}),
    ...(options.onStep ? { onProgress: (metric: MetricPlugin, done: number, total: number) => options.onStep!(metric.table, done, total) } : {}),
  });
  return results.tables;
}

export interface StatisticsOptions {
  readonly modelDir: string;
  /** Reuse these tables (a `layerquant sensitivity` output or a paper-data directory) instead of computing. */
  readonly statsDir?: string;
  /** Where computed tables are cached, one directory per settings key: `<cacheDir>/<key>/`. */
  readonly cacheDir?: string;
  /** The tables the methods read (allocators' `tablesNeededBy`). */
  readonly needs: readonly string[];
  /** The metric plug-ins that fill tables, one per table (the registry's; default the built-ins). */
  readonly metrics?: readonly MetricPlugin[];
  /** The config ladder: fnorm.csv and measured.csv are measured for these configs only (default: the paper's 12). */
  readonly configs?: readonly QuantConfig[];
  /** The embedding units the per-config tables cover too, each at its own ladder (an allocation for a shipped format). */
  readonly embeddingConfigs?: EmbeddingLadders;
  /** Linear modules measured at fewer configs than `configs` (an allocation for a shipped format: core's moduleLadder). */
  readonly moduleConfigs?: ModuleLadders;
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
   * The model's matrices and sizes (core's modelMatrixParams), given to the allocators beside the tables; when the
   * methods need no table (uniform, a layer-position rule), nothing is computed.
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

type ConfigRow = { layer: number; module: UnitModule; bits: number; groupSize: number; zero: ZeroKind };

/**
 * The first row a per-config table lacks (`<unit> at <config>`): every linear matrix needs a row for every config of
 * the ladder, every embedding unit asked for one for every config of its own ladder. "no rows" without a table;
 * undefined when nothing is missing.
 */
function missingRow(rows: readonly ConfigRow[] | undefined, configs: readonly QuantConfig[] | undefined, embedding?: EmbeddingLadders, modules?: ModuleLadders): string | undefined {
  if (!rows) return 'no rows';
  const have = new Set(rows.map((r) => `${matrixKey(r.layer, r.module)}.${configName(rowConfig(r))}`));
  if (configs) {
    const matrices = new Map(rows.filter((r) => isLinearModule(r.module)).map((r) => [matrixKey(r.layer, r.module), r.module as LinearModule]));
    for (const [m, module] of matrices) for (const c of moduleLadder(configs, module, modules)) if (!have.has(`${m}.${configName(c)}`)) return `${m} at ${configName(c)}`;
  }
  for (const [unit, ladder] of Object.entries(embedding ?? {})) for (const c of ladder ?? []) if (!have.has(`${unit}.${configName(c)}`)) return `${unit} at ${configName(c)}`;
  return undefined;
}

/**
 * What `stats` lacks of the tables needed (the per-config tables, fnorm and measured, at every config of the ladders,
 * the embedding units' included): `<file>: <gap>` of the first gap, or undefined when it holds them all.
 */
function missingTable(stats: ModelStats, needs: readonly string[], configs?: readonly QuantConfig[], embedding?: EmbeddingLadders, modules?: ModuleLadders): string | undefined {
  for (const table of needs) {
    const gap =
      table === 'fnorm' ? missingRow(stats.fnorm?.rows, configs, embedding, modules) : table === 'measured' ? missingRow(stats.measured?.rows, configs, embedding, modules) : hasTable(stats, table) ? undefined : 'no table';
    if (gap) return `${tableFile(table)}: ${gap}`;
  }
  return undefined;
}

/** Whether `stats` holds every table needed, the per-config tables (fnorm, measured) for every config of the ladders. */
function hasTables(stats: ModelStats, needs: readonly string[], configs?: readonly QuantConfig[], embedding?: EmbeddingLadders, modules?: ModuleLadders): boolean {
  return missingTable(stats, needs, configs, embedding, modules) === undefined;
}

/**
 * The metric of each table needed, in registry order (so fnorm comes before kurtosis, which is then read off its
 * column). A table no metric fills is an error saying how to get it.
 */
export function metricsForTables(needs: readonly string[], metrics: readonly MetricPlugin[]): MetricPlugin[] {
  for (const table of needs) {
    if (!metrics.some((m) => m.table === table)) {
      throw new InvalidOptionError('--plugin', `the methods read the table "${table}", which no metric fills (metrics: ${metrics.map((m) => `${m.id} -> ${m.table}`).join(', ')}); load the metric plug-in that fills it with --plugin, or give the tables with --stats`);
    }
  }
  return metrics.filter((m) => needs.includes(m.table));
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
 * the same settings (model content, calibration text, blocks, seqlen, configs, quantizer, the metrics of plug-in
 * tables), else measured by the metrics that fill the tables needed (in process, or by `compute`) and saved there
 * through each metric's `format` (written to a temporary directory, then renamed).
 */
export async function ensureStatistics(options: StatisticsOptions): Promise<ResolvedStatistics> {
  const resolved = await resolveStatistics(options);
  // The model's matrix list beside the tables: an allocator whose tables list no matrices (sensitivity.csv, a
  // plug-in's table) gets them from it; a table's own list wins where there is one (matricesOf).
  return options.matrices ? { ...resolved, stats: { ...resolved.stats, matrices: matrixList(options.matrices) } } : resolved;
}

async function resolveStatistics(options: StatisticsOptions): Promise<ResolvedStatistics> {
  const { needs } = options;
  const metrics = options.metrics ?? SENSITIVITY_METRICS;
  const note = options.onNote ?? (() => undefined);
  if (needs.length === 0 && options.matrices && !options.statsDir) {
    note('statistics: none needed (the methods read no table)');
    return { stats: { matrices: matrixList(options.matrices), source: 'the model (no statistics needed)' }, source: 'none needed', key: 'none', computed: false };
  }
  if (options.statsDir) {
    const stats = await loadStatsDirectory(options.statsDir, metrics);
    const gap = missingTable(stats, needs, options.configs, options.embeddingConfigs, options.moduleConfigs);
    if (gap) {
      // The embedding units' ladders come from a format plan: their rows are measured by sensitivity --target-format.
      const embedding = Object.entries(options.embeddingConfigs ?? {}).filter(([, ladder]) => (ladder?.length ?? 0) > 0);
      const embeddingArgs = embedding.length > 0 ? ` --target-format <format> --embedding-configs ${[...new Set(embedding.flatMap(([, ladder]) => ladder!.map(configName)))].join(',')}` : '';
      throw new InvalidDataError(
        options.statsDir,
        `lacks what the methods need (${gap}; they read ${needs.map(tableFile).join(', ')}${options.configs ? ` for ${options.configs.map(configName).join(',')}` : ''}${embedding.length > 0 ? ` and ${embedding.map(([unit, ladder]) => `${unit} at ${ladder!.map(configName).join(',')}`).join(', ')}` : ''}); run \`layerquant sensitivity${needs.includes('measured') ? ' --measured' : ''}${options.configs ? ` --configs ${options.configs.map(configName).join(',')}` : ''}${embeddingArgs}\` to make them`,
      );
    }
    return { stats, source: options.statsDir, key: await directoryKey(options.statsDir), computed: false };
  }
  const measuring = metricsForTables(needs, metrics);
  if (!existsSync(options.calibrationPath)) throw new MissingFileError(options.calibrationPath, 'calibration text not found; pass a UTF-8 text file with --calib');
  const text = await readTextFile(options.calibrationPath, 'a UTF-8 calibration text with --calib');
  if (text.trim().length === 0) throw new InvalidDataError(options.calibrationPath, 'is empty; calibration needs text');
  const ladder = options.configs ?? PAPER_CONFIGS;
  const settings = computedStatsSettings({
    model: await modelContentHash(options.modelDir),
    calibration: await fileContentHash(options.calibrationPath),
    calibrationName: options.calibrationName,
    blocks: options.blocks,
    seqlen: options.seqlen,
    ...(options.order ? { order: options.order } : {}),
    ...(options.configs ? { fnormConfigs: options.configs } : {}),
    measured: needs.includes('measured'),
    // Only what the methods read: KurtBoost alone reads the weights' kurtosis, never the model's activations.
    sensitivity: needs.includes('sensitivity'),
    fnorm: needs.includes('fnorm'),
    metrics: measuring.filter((m) => !(BUILTIN_TABLES as readonly string[]).includes(m.table)),
    ...(options.embeddingConfigs ? { embeddingConfigs: options.embeddingConfigs } : {}),
    ...(options.moduleConfigs ? { moduleConfigs: options.moduleConfigs } : {}),
    ...(options.quantizer ? { quantizer: quantizerSettings(options.quantizer.quantizer, options.quantizer.options) } : {}),
  });
  const key = settingsKey(settings);
  if (options.cacheDir) {
    const dir = join(options.cacheDir, key);
    if (existsSync(join(dir, SETTINGS_FILE))) {
      const stats = await loadStatsDirectory(dir, metrics);
      if (hasTables(stats, needs, options.configs, options.embeddingConfigs, options.moduleConfigs)) {
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
  const request: StatisticsRequest = {
    modelDir: options.modelDir,
    key,
    settings,
    metrics: measuring,
    measure: {
      calibrationName: options.calibrationName,
      blocks: options.blocks,
      seqlen: options.seqlen,
      ...(options.order ? { order: options.order } : {}),
      configs: ladder,
      sensitivityConfigs: [DEFAULT_SENSITIVITY_CONFIG],
      ...(options.embeddingConfigs ? { embeddingConfigs: options.embeddingConfigs } : {}),
      ...(options.moduleConfigs ? { moduleConfigs: options.moduleConfigs } : {}),
      ...(options.quantizer ? { quantizer: { id: options.quantizer.quantizer.id, options: options.quantizer.options } } : {}),
    },
    calibrationText: text,
    ...(options.quantizer?.quantizer.calibration ? { calibrated: true } : {}),
  };
  const compute: ComputeStatistics =
    options.compute ?? ((r) => measureTables(r.modelDir, r.metrics, { ...r.measure, calibrationText: r.calibrationText, ...(options.quantizer ? { resolvedQuantizer: options.quantizer.quantizer } : {}), ...(options.threads ? { threads: options.threads } : {}), ...(options.onStep ? { onStep: options.onStep } : {}) }));
  const tables = await compute(request);
  const stats: ModelStats = { ...tables, source: options.cacheDir ? join(options.cacheDir, key) : options.modelDir };
  if (!options.cacheDir) return { stats, source: 'computed', key, computed: true };
  await mkdir(options.cacheDir, { recursive: true });
  removeStaleTemporaries(options.cacheDir);
  const dir = join(options.cacheDir, key);
  await writeDirectoryAtomic(dir, async (tmp) => {
    await writeMetricTables(tmp, measuring, tables);
    await writeTextAtomic(join(tmp, SETTINGS_FILE), `${JSON.stringify(settings, null, 1)}\n`);
  });
  // Read back what was written, so a first run, a resumed run and queue workers allocate from the same numbers.
  return { stats: await loadStatsDirectory(dir, metrics), source: `${dir} (computed)`, key, computed: true };
}
