import { checkMethodBudget, tablesNeededBy, type MethodSpec, type ModelStats } from '@layerquant/allocators';
import { InvalidOptionError, checkContextLength, configName, modelMatrixParams, type DecoderConfig, type QuantConfig } from '@layerquant/core';
import { readEvaluationText } from '@layerquant/perplexity';
import {
  builtinRegistries,
  ensureStatistics,
  fileContentHash,
  floatKldBase,
  methodRefines,
  checkRefineQuantizer,
  openRefineSession,
  type FloatKldBase,
  type RefinePlan,
  type RefineSession,
  type RefinementReport,
  modelContentHash,
  quantizerOf,
  quantizerSettings,
  type ComputeStatistics,
  type PluginRegistries,
  type QuantizerChoice,
  type StatisticsStep,
  formatAllocationSettings,
  type ExportRequest,
  type FormatPlan,
} from '@layerquant/pipeline';
import { loadTokenizer, openModel, openOutputDirectory, removeStaleTemporaries, summarizeModel, testHookDelayMs, writeTextAtomic, type ModelSummary } from '@layerquant/tensor-io';
import type { MetricPlugin } from '@layerquant/sensitivity';
import type { RefinementRound } from '@layerquant/allocators';
import { basename, join } from 'node:path';
import { shippedTarget, type CellContext, type CellResult, type ShippedUnit } from './cell.js';
import { planCells, type PlannedCell } from './plan.js';
import { formatResultsCsv, formatResultsMarkdown, type ExperimentRow, type ReportMetric } from './report.js';
import { ResultsStore } from './results-store.js';
import { runExperiment, type ExperimentEvent } from './run-experiment.js';

/**
 * The whole `layerquant experiment` as two library calls: `prepareGrid` checks the grid and the model and
 * tokenizes the text (cheap, before anything long: a caller shows its plan here), `runGrid` resolves the statistics
 * (a directory, the cache under <out>/stats, or computed), runs every cell not already in <out>/results.json under
 * the same settings key, and writes results.json, results.csv and results.md as cells finish. The cells run in this
 * process, or through a `GridDistributor` (the queue's coordinator) that spreads them over workers.
 */

/** Tokens per calibration block of the statistics, of a calibrated quantizer's layer pass and of the correction by measurement. */
const CALIBRATION_SEQLEN = 512;

export interface GridOptions {
  readonly modelDir: string;
  readonly methods: readonly MethodSpec[];
  readonly budgets: readonly number[];
  /** The evaluation text file (e.g. `datasets['brown-test']` of @layerquant/datasets). */
  readonly textPath: string;
  /** Perplexity window (default 512). */
  readonly seqlen?: number;
  /** Evaluate the first tokens of the text only. */
  readonly maxTokens?: number;
  /** The config ladder (default: the paper's 12). */
  readonly configs?: readonly QuantConfig[];
  /** Include the unquantized baseline row (default true). */
  readonly includeFloat?: boolean;
  /** Built-ins and `--plugin` modules' plug-ins (default: the built-ins). */
  readonly plugins?: PluginRegistries;
  /**
   * A grid of shipped files (`experiment --target-format onnx|gguf`): the budgets are targets of that file (`unit`:
   * its MiB, or its bits per linear weight), every method a knapsack allocator spending its bytes, and each cell
   * measures the file it wrote. The plan's ladder replaces `configs`.
   */
  readonly shipped?: ShippedGrid;
}

/** The format of a grid of shipped files, its plan (exact bytes, native ladders), and what its budgets measure. */
export interface ShippedGrid {
  readonly request: ExportRequest;
  readonly plan: FormatPlan;
  readonly unit: ShippedUnit;
}

export interface PreparedGrid extends Required<Pick<GridOptions, 'modelDir' | 'methods' | 'budgets' | 'textPath' | 'seqlen' | 'includeFloat' | 'plugins'>> {
  readonly maxTokens?: number;
  readonly shipped?: ShippedGrid;
  readonly configs?: readonly QuantConfig[];
  /** config.json, validated against the tensors. */
  readonly config: DecoderConfig;
  readonly summary: ModelSummary;
  /** The whole text's token ids (no BOS). */
  readonly ids: readonly number[];
  /** Tokens every cell evaluates. */
  readonly tokens: number;
  readonly cells: number;
}

/** Checks every method at every budget (uniform and the boosts at the stop below), the model and its context, and tokenizes the text. */
export async function prepareGrid(options: GridOptions): Promise<PreparedGrid> {
  const plugins = options.plugins ?? builtinRegistries();
  const allocators = plugins.allocators.list();
  const seqlen = options.seqlen ?? 512;
  const { shipped } = options;
  for (const method of options.methods) {
    for (const budget of options.budgets) {
      // Under a format every method must spend the file's bytes (a stop allocator is refused, naming the knapsacks).
      if (shipped) formatAllocationSettings(method, shipped.plan, { target: shippedTarget(budget, shipped.unit) }, allocators);
      else checkMethodBudget(method, budget, options.configs, allocators, true);
    }
  }
  // Validate the model before any long step (a bad directory fails here with its own error).
  const { config, checkpoint } = await openModel(options.modelDir);
  const summary = await (async () => {
    try {
      return summarizeModel(checkpoint.dir, config, checkpoint.tensors, checkpoint.files.length);
    } finally {
      await checkpoint.close();
    }
  })();
  checkContextLength(seqlen, summary, '--seqlen');
  const text = await readEvaluationText(options.textPath);
  const ids = (await loadTokenizer(options.modelDir)).encode(text);
  const includeFloat = options.includeFloat ?? true;
  return {
    modelDir: options.modelDir,
    methods: options.methods,
    budgets: options.budgets,
    textPath: options.textPath,
    seqlen,
    ...(options.maxTokens === undefined ? {} : { maxTokens: options.maxTokens }),
    ...(shipped ? { configs: shipped.plan.configs, shipped } : options.configs ? { configs: options.configs } : {}),
    includeFloat,
    plugins,
    config,
    summary,
    ids,
    tokens: options.maxTokens === undefined ? ids.length : Math.min(options.maxTokens, ids.length),
    cells: options.methods.length * options.budgets.length + (includeFloat ? 1 : 0),
  };
}

/** What a distributor is given to run the cells elsewhere (the queue's coordinator). */
export interface DistributedCells {
  readonly planned: readonly PlannedCell[];
  readonly modelDir: string;
  readonly modelHash: string;
  readonly text: { readonly path: string; readonly hash: string };
  readonly statsKey: string;
  readonly stats: ModelStats;
  readonly context: CellContext;
  /** The quantizer of every cell, as the workers resolve it through their registries. */
  readonly quantizer: QuantizerChoice;
  /** The metric plug-ins, to send the statistics' tables through their format and parse. */
  readonly metrics: readonly MetricPlugin[];
  /** Cells already in results.json under the same key: never run again. */
  readonly done: ReadonlyMap<string, CellResult>;
  /**
   * Cells also measure their KLD from the unquantized model (`kld`): a worker computes that model's logits once into
   * its own cache (it has the model; keyed by content, so every worker's base is the same) and records KLD as here.
   */
  readonly kld?: boolean;
  /**
   * `experiment --refine`: the methods whose cells correct their allocation by measurement, the calibration it
   * measures on (the statistics' text and blocks) and the quantizer its candidates are quantized with (the
   * statistics' quantizer). A worker opens the measurer on its own model, as the in-process grid does once.
   */
  readonly refine?: {
    readonly methods: readonly string[];
    readonly calibration: { readonly calibrationPath: string; readonly calibrationName: string; readonly blocks: number; readonly seqlen: number };
    readonly quantizer: QuantizerChoice;
  };
  readonly onResult: (result: CellResult) => Promise<void>;
}

/** Runs a grid's statistics and cells somewhere else (`@layerquant/queue`'s coordinator is one). */
export interface GridDistributor {
  statisticsComputer(model: { modelDir: string; modelHash: string }): ComputeStatistics;
  runCells(cells: DistributedCells): Promise<void>;
  close(): Promise<void>;
}

export interface RunGridOptions {
  /** Where results.json, results.csv, results.md and the statistics cache (stats/<key>) go; locked while running. */
  readonly outDir: string;
  /** Ignore the results already in results.json (they are overwritten on the first save). */
  readonly fresh?: boolean;
  /** Statistics: a directory to read (`statsDir`), else computed on the calibration text and cached. */
  readonly statistics: { readonly statsDir?: string; readonly calibrationPath: string; readonly calibrationName: string; readonly blocks: number };
  /** Seed of the ablations' random layers (default 42). */
  readonly seed?: number;
  /** The quantizer of every cell (default HQQ with its defaults), resolved through the registries. */
  readonly quantizer?: QuantizerChoice;
  /**
   * The quantizer the statistics that quantize (fnorm, sensitivity, measured) are measured with (default: the cells'
   * quantizer; `{ id: 'hqq', options: {} }` gives the authors' HQQ tables whatever the cells' quantizer).
   */
  readonly statisticsQuantizer?: QuantizerChoice;
  /** onnxruntime threads (default: one per core). */
  readonly threads?: number;
  /**
   * Every cell also measures its KL divergence from the unquantized model on the same windows (the model's logits
   * computed once into <out>/kld, keyed by model, tokenizer, text and windows). Part of each cell's key.
   */
  readonly kld?: boolean;
  /**
   * Cells of a method whose allocator corrects its first allocation by measurement (kld's `refine`) run that
   * correction, on the statistics' calibration (text, blocks of 512 tokens): the corrected allocation is quantized
   * when its measured KLD is not above the first one's. Part of those cells' keys only; in process only (refused
   * with `connect`).
   */
  readonly refine?: boolean;
  /** With `refine`: the plan of each cell's correction, each allocation it measured, and its result. */
  readonly onRefine?: {
    readonly plan?: (cell: string, plan: RefinePlan) => void;
    readonly round?: (cell: string, round: RefinementRound) => void;
    readonly done?: (cell: string, report: RefinementReport) => void;
  };
  /** What results.md's intervals, win/tie/loss and headline are read by (default ppl; kld needs `kld`). */
  readonly metric?: ReportMetric;
  /** Runs the statistics and cells elsewhere; connected after results.json is read, closed at the end. */
  readonly connect?: () => Promise<GridDistributor>;
  /** Lines for a log: what was reused and why, what was not. */
  readonly onNote?: (line: string) => void;
  readonly onStatistics?: (step: StatisticsStep, done: number, total: number) => void;
  /** Called once the statistics are resolved, with where they came from. */
  readonly onStatisticsReady?: (source: string) => void;
  /** In-process cells: start, windows, done. */
  readonly onEvent?: (event: ExperimentEvent) => void;
}

export interface GridResult {
  readonly outDir: string;
  /** The planned cells' rows, in report order (fp first, then budget-major, methods in the order given). */
  readonly rows: readonly ExperimentRow[];
  /** results.csv, results.md, results.json. */
  readonly files: readonly string[];
  /** Where the statistics came from. */
  readonly statistics: string;
}

export async function runGrid(grid: PreparedGrid, options: RunGridOptions): Promise<GridResult> {
  const note = options.onNote ?? (() => undefined);
  const { modelDir, textPath, ids, seqlen, plugins } = grid;
  const seed = options.seed ?? 42;
  const ladder = grid.configs;
  const choice: QuantizerChoice = options.quantizer ?? { id: 'hqq', options: {} };
  const quantizer = quantizerOf(plugins, choice);
  const statisticsChoice: QuantizerChoice = options.statisticsQuantizer ?? choice;
  const statisticsQuantizer = statisticsChoice === choice ? quantizer : quantizerOf(plugins, statisticsChoice);
  const metric = options.metric ?? 'ppl';
  if (metric === 'kld' && !options.kld) throw new InvalidOptionError('--metric', 'kld reads the cells\' KL divergence from the unquantized model: add --kld so the cells measure it');
  const allocators = plugins.allocators.list();
  const refining = options.refine ? grid.methods.filter((m) => methodRefines(m, allocators)) : [];
  if (refining.length > 0) checkRefineQuantizer(statisticsQuantizer);
  const { shipped } = grid;
  if (shipped && options.connect) throw new InvalidOptionError('--queue', 'a grid of shipped files (--target-format) runs in this process: the queue\'s workers run cells at budgets of the paper\'s accounting');
  if (shipped && refining.length > 0) throw new InvalidOptionError('--refine', 'a grid of shipped files (--target-format) quantizes each allocation as it is; correct one by measurement with `quantize --format ... --target-size` instead');
  const out = await openOutputDirectory(options.outDir, 'experiment');
  let distributor: GridDistributor | undefined;
  let kldBase: FloatKldBase | undefined;
  let refineSession: RefineSession | undefined;
  try {
    const outDir = out.path;
    for (const name of out.removedTemporaries) note(`removed ${join(outDir, name)}, a temporary left by a process that no longer runs`);
    removeStaleTemporaries(join(outDir, 'stats'));
    const store = await ResultsStore.open(join(outDir, 'results.json'), options.fresh === true);
    for (const line of store.notes) note(line);
    const modelHash = await modelContentHash(modelDir);
    const textHash = await fileContentHash(textPath);
    if (options.connect) distributor = await options.connect();

    const resolved = await ensureStatistics({
      modelDir,
      ...(options.statistics.statsDir ? { statsDir: options.statistics.statsDir } : {}),
      cacheDir: join(outDir, 'stats'),
      needs: tablesNeededBy(grid.methods, allocators),
      metrics: plugins.metrics.list(),
      // A grid whose methods read no table (uniform alone) computes none: the allocators get the model's matrices.
      matrices: modelMatrixParams(grid.config),
      calibrationPath: options.statistics.calibrationPath,
      calibrationName: options.statistics.calibrationName,
      blocks: options.statistics.blocks,
      seqlen: CALIBRATION_SEQLEN,
      ...(ladder ? { configs: ladder } : {}),
      // a grid of shipped files measures the embedding units, and modules the format stores at fewer configs at their own ladders
      ...(shipped ? { embeddingConfigs: shipped.plan.embeddingConfigs } : {}),
      ...(shipped && Object.keys(shipped.plan.moduleConfigs).length > 0 ? { moduleConfigs: shipped.plan.moduleConfigs } : {}),
      ...(options.threads ? { threads: options.threads } : {}),
      ...(options.onStatistics ? { onStep: options.onStatistics } : {}),
      quantizer: { quantizer: statisticsQuantizer, options: statisticsChoice.options },
      onNote: note,
      ...(distributor ? { compute: distributor.statisticsComputer({ modelDir, modelHash }) } : {}),
    });
    options.onStatisticsReady?.(resolved.source);

    const maxTokens = grid.maxTokens;
    // The statistics' calibration text (the same blocks) is what a calibrated quantizer's cells quantize on, layer by
    // layer, and what the correction by measurement measures on.
    const calibrationText = { calibrationPath: options.statistics.calibrationPath, calibrationName: options.statistics.calibrationName, blocks: options.statistics.blocks, seqlen: CALIBRATION_SEQLEN };
    const calibration = quantizer.calibration ? calibrationText : undefined;
    const calibrationKey = calibration || refining.length > 0 ? { text: await fileContentHash(calibrationText.calibrationPath), blocks: calibrationText.blocks, seqlen: calibrationText.seqlen } : undefined;
    const planned = planCells(
      {
        model: modelHash, text: textHash, seqlen, maxTokens: maxTokens ?? null, seed, ...(ladder ? { configs: ladder.map(configName) } : {}), quantizer: quantizerSettings(quantizer, choice.options), ...(options.kld ? { kld: true } : {}),
        // A calibrated quantizer's cells depend on the calibration text and blocks (also when no table reads them).
        ...(calibration ? { calibration: calibrationKey! } : {}),
        ...(refining.length > 0 ? { refine: { allocators: [...new Set(refining.map((m) => m.allocator))], calibration: calibrationKey!.text, blocks: calibrationKey!.blocks, seqlen: calibrationKey!.seqlen } } : {}),
        ...(shipped ? { shipped: shippedSettings(shipped) } : {}),
      },
      grid.methods,
      grid.budgets,
      grid.includeFloat,
      resolved.key,
    );
    for (const line of store.explain(planned)) note(line);
    const report = {
      model: grid.summary.architecture === 'LlamaForCausalLM' ? basename(modelDir) : `${basename(modelDir)} (${grid.summary.architecture})`,
      text: basename(textPath),
      tokens: grid.tokens,
      protocol: `non-overlapping windows of ${seqlen}`,
      statsSource: resolved.source,
      ...(shipped ? { budgetLabel: `${shipped.unit === 'MiB' ? 'target MiB' : 'target bits per linear weight'} of ${shipped.plan.cost.label}` } : {}),
    };
    const files = ['results.csv', 'results.md', 'results.json'].map((f) => join(outDir, f));
    const save = async () => {
      const rows = store.rows(planned);
      await store.save(planned, { model: modelDir, text: textPath, tokens: ids.length, seqlen, maxTokens: maxTokens ?? null, stats: resolved.source.replace(/ \((cached|computed)\)$/, ''), seed, ...(ladder ? { configs: ladder.map(configName) } : {}) });
      await writeTextAtomic(files[0]!, formatResultsCsv(rows));
      await writeTextAtomic(files[1]!, formatResultsMarkdown(rows, report, {}, metric));
    };
    const settingsOf = new Map(planned.map((p) => [p.spec.key, p.settings]));
    const cellDelay = testHookDelayMs('LAYERQUANT_TEST_CELL_DELAY_MS');
    const onResult = async (result: CellResult) => {
      // Test hook: the interrupt tests hold a finished cell unrecorded for a while, to signal while it is in flight.
      if (cellDelay > 0) await new Promise((r) => setTimeout(r, cellDelay));
      store.add(result, settingsOf.get(result.key)!);
      await save();
    };
    const done = store.reusable(planned);
    if (options.kld && !distributor && planned.some((p) => !done.has(p.spec.key))) {
      // The unquantized model's logits, once for the whole grid (cached in <out>/kld by model, tokenizer, text, windows).
      kldBase = await floatKldBase(modelDir, ids, { seqlen, ...(maxTokens === undefined ? {} : { maxTokens }) }, {
        cacheDir: join(outDir, 'kld'),
        evaluation: options.threads ? { threads: options.threads } : {},
        onCompute: (file, bytes) => note(`KLD base: computing the unquantized model's logits (one float pass) into ${file}, ${(bytes / 2 ** 20).toFixed(1)} MiB`),
      });
      if (!kldBase.computed) note(`KLD base: reusing ${kldBase.base.path}`);
    }
    if (!distributor && refining.length > 0 && planned.some((p) => !done.has(p.spec.key) && p.spec.kind === 'method' && methodRefines(p.spec.method, allocators))) {
      // One measurer for every refined cell: the float model's distributions on the statistics' calibration, once.
      refineSession = await openRefineSession(modelDir, statisticsQuantizer, { ...calibrationText, ...(options.threads ? { threads: options.threads } : {}) });
    }
    const context: CellContext = {
      ...(kldBase ? { kldBase: kldBase.base } : {}),
      ...(refineSession
        ? { refine: { session: refineSession, ...(options.onRefine?.plan ? { onPlan: options.onRefine.plan } : {}), ...(options.onRefine?.round ? { onRound: options.onRefine.round } : {}), ...(options.onRefine?.done ? { onDone: options.onRefine.done } : {}) } }
        : {}),
      ...(shipped
        ? { shipped: { request: shipped.request, plan: shipped.plan, unit: shipped.unit, statistics: { ...calibrationText, ...(options.statistics.statsDir || resolved.key !== 'none' ? { statsDir: options.statistics.statsDir ?? join(outDir, 'stats', resolved.key) } : {}), metrics: plugins.metrics.list(), ...(options.threads ? { threads: options.threads } : {}) }, quantizers: plugins.quantizers } }
        : {}),
      modelName: basename(modelDir), stats: resolved.stats, ids, seqlen, ...(maxTokens === undefined ? {} : { maxTokens }), seed, ...(ladder ? { configs: ladder } : {}), quantizer,
      ...(calibration ? { calibration: { ...calibration, ...(options.threads ? { threads: options.threads } : {}) } } : {}),
    };
    if (distributor) {
      await distributor.runCells({
        planned, modelDir, modelHash, text: { path: textPath, hash: textHash }, statsKey: resolved.key, stats: resolved.stats, context, quantizer: choice, metrics: plugins.metrics.list(), done, onResult,
        ...(options.kld ? { kld: true } : {}),
        ...(refining.length > 0 ? { refine: { methods: refining.map((m) => m.id), calibration: calibrationText, quantizer: statisticsChoice } } : {}),
      });
    } else {
      await runExperiment({
        modelDir,
        cells: planned.map((p) => p.spec),
        ...context,
        // The registry's allocators (--plugin's included); queue workers load the same --plugin modules.
        allocators,
        ...(options.threads ? { threads: options.threads } : {}),
        done,
        ...(options.onEvent ? { onEvent: options.onEvent } : {}),
        onCell: onResult,
      });
    }
    await save();
    return { outDir, rows: store.rows(planned), files, statistics: resolved.source };
  } finally {
    await refineSession?.close();
    await kldBase?.base.close();
    await distributor?.close();
    out.release();
  }
}

/** What a grid of shipped files adds to its method cells' keys: the format, its export options, the unit of the targets, the ladders. */
function shippedSettings(shipped: ShippedGrid): Record<string, unknown> {
  const names = (ladder: readonly QuantConfig[]) => ladder.map(configName);
  return {
    format: shipped.request.format,
    options: { ...shipped.request.options },
    unit: shipped.unit,
    embeddings: Object.fromEntries(Object.entries(shipped.plan.embeddingConfigs).map(([unit, ladder]) => [unit, names(ladder as readonly QuantConfig[])])),
    modules: Object.fromEntries(Object.entries(shipped.plan.moduleConfigs).map(([module, ladder]) => [module, names(ladder as readonly QuantConfig[])])),
  };
}
