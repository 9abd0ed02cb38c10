import {
  ALLOCATOR_PLUGINS,
  allocateMethod,
  checkMethodBudget,
  matricesOf,
  extraMemoryPercent,
  tablesNeededBy,
  uniformBaseline,
  validateStats,
  type AllocatorPlugin,
  type MethodSpec,
} from '@layerquant/allocators';
import { InvalidDataError, InvalidOptionError, MissingFileError, configName, isLinearModule, modelMatrixParams, type Allocation, type OptionValue, type QuantConfig, type Quantizer } from '@layerquant/core';
import { formatAllocationSettings, shippedBytes, shippedSizeBudget, statisticsForPlan, type FileTarget, type FormatPlan } from './shipped-format.js';
import { quantizeModel, type QuantizeModelOptions, type QuantizeModelReport } from '@layerquant/quantizers/node';
import type { MatrixCalibration, ScaleDtype } from '@layerquant/quantizers';
import { openSequentialCalibration } from '@layerquant/sensitivity';
import { existsSync } from 'node:fs';
import { openModel, openOutputDirectory, readTextFile, temporaryPath, type OpenedModel } from '@layerquant/tensor-io';
import { rm } from 'node:fs/promises';
import type { PluginRegistries } from './plugins.js';
import { exportModel, type ExportRequest, type ExportResult } from './export-model.js';
import { ensureStatistics, type StatisticsOptions, type StatisticsStep } from './statistics.js';
import { methodRefines, openRefineSession, refineAllocation, type RefinePlan, type RefinementReport } from './refine.js';
import type { RefinementRound } from '@layerquant/allocators';

/**
 * The three ways to quantize a model directory, as library calls: one config for every matrix
 * (`quantizeUniform`), a config per matrix from an allocator plug-in at a budget (`quantizeAllocated`), and either
 * of them exported as an ONNX directory or a GGUF file in the same process (`exportQuantized`). They print nothing: progress goes
 * to the callbacks, and the result is data.
 */

/**
 * The calibration text of a calibrated quantizer's layer pass (GPTQ, BAQ: each matrix's input Hessian, collected with
 * the matrices before it already quantized). Ignored for a quantizer that sees weights only.
 */
export interface QuantizerCalibrationOptions {
  /** A UTF-8 text file (`--calib`) ... */
  readonly calibrationPath?: string;
  /** ... or its text. */
  readonly text?: string;
  readonly calibrationName?: string;
  /** Blocks of `seqlen` tokens (default 128, fewer for a short text). */
  readonly blocks?: number;
  readonly seqlen?: number;
  /** onnxruntime intra-op threads of the layer pass. */
  readonly threads?: number;
  /** Called as the layer pass moves past each layer. */
  readonly onLayer?: (layer: number, layers: number) => void;
}

/**
 * Runs `quantize` with the layer pass a calibrated quantizer needs (`quantizer.calibration`): the model's decoder
 * blocks over the calibration text, opened here and closed after; a quantizer that sees weights only gets none.
 */
export async function withQuantizerCalibration<T>(
  modelDir: string,
  quantizer: Quantizer,
  options: QuantizerCalibrationOptions | undefined,
  quantize: (calibration: MatrixCalibration | undefined) => Promise<T>,
): Promise<T> {
  if (quantizer.calibration === undefined) return quantize(undefined);
  let text = options?.text;
  if (text === undefined) {
    const path = options?.calibrationPath;
    if (path === undefined) throw new InvalidOptionError('--calib', `quantizer "${quantizer.id}" is calibrated: give calibration text with --calib <file>`);
    if (!existsSync(path)) throw new MissingFileError(path, 'calibration text not found; pass a UTF-8 text file with --calib');
    text = await readTextFile(path, 'a UTF-8 calibration text with --calib');
  }
  if (text.trim().length === 0) throw new InvalidDataError(options?.calibrationPath ?? 'calibration text', `is empty; quantizer "${quantizer.id}" needs calibration text`);
  const opened = await openSequentialCalibration(modelDir, {
    text,
    name: options?.calibrationName ?? 'calibration',
    ...(options?.blocks === undefined ? {} : { blocks: options.blocks }),
    ...(options?.seqlen === undefined ? {} : { seqlen: options.seqlen }),
    ...(options?.threads === undefined ? {} : { threads: options.threads }),
    ...(options?.onLayer ? { onLayer: options.onLayer } : {}),
  });
  try {
    return await quantize(opened.calibration);
  } finally {
    await opened.close();
  }
}

/** What both checkpoint-writing modes share. */
export interface QuantizeRunOptions {
  readonly modelDir: string;
  readonly outDir: string;
  /** The quantizer of every quantized matrix (configured with its options). */
  readonly quantizer: Quantizer;
  /** How scales and zeros are stored (default F32). */
  readonly scaleDtype?: ScaleDtype;
  /** Worker threads for the built-in quantizers (default 1). */
  readonly workers?: number;
  /** Settings recorded in the checkpoint (`__metadata__["layerquant.options"]`). */
  readonly record?: Readonly<Record<string, unknown>>;
  /** The calibration text of a calibrated quantizer's layer pass (required for one; ignored otherwise). */
  readonly calibration?: QuantizerCalibrationOptions;
  readonly onPlan?: QuantizeModelOptions['onPlan'];
  readonly onProgress?: QuantizeModelOptions['onProgress'];
}

/**
 * Validates the model (config.json against its tensors, so a wrong config fails before any long step), then holds
 * the output directory's lock for the whole run: a second layerquant writing the same directory stops with an
 * error. quantizeModel swaps the output files in as one set; a failed run leaves the directory as it was (one it
 * created is removed).
 */
async function withOutputDirectory<T>(modelDir: string, outDir: string, run: (model: OpenedModel) => Promise<T>): Promise<T> {
  const model = await openModel(modelDir);
  await model.checkpoint.close();
  const output = await openOutputDirectory(outDir, 'quantize');
  try {
    return await run(model);
  } catch (error) {
    output.abandon();
    throw error;
  } finally {
    output.release();
  }
}

/** One config for every linear matrix (`layerquant quantize --config b4g64`). */
export async function quantizeUniform(options: QuantizeRunOptions & { readonly config: QuantConfig; readonly method: string }): Promise<QuantizeModelReport> {
  return withOutputDirectory(options.modelDir, options.outDir, () => withQuantizerCalibration(options.modelDir, options.quantizer, options.calibration, (calibration) =>
    quantizeModel({
      modelDir: options.modelDir,
      outDir: options.outDir,
      quantizer: options.quantizer,
      configFor: () => options.config,
      method: options.method,
      ...(options.scaleDtype ? { scaleDtype: options.scaleDtype } : {}),
      ...(options.workers === undefined ? {} : { workers: options.workers }),
      ...(options.record ? { options: options.record } : {}),
      ...(calibration ? { calibration } : {}),
      ...(options.onPlan ? { onPlan: options.onPlan } : {}),
      ...(options.onProgress ? { onProgress: options.onProgress } : {}),
    })),
  );
}

export interface AllocatedQuantizeOptions extends QuantizeRunOptions {
  readonly method: MethodSpec;
  /** Bits per weight. */
  readonly budget: number;
  /** Seed of randomised allocators unless the method names its own (default 42). */
  readonly seed?: number;
  /** The config ladder (default: the paper's 12). */
  readonly configs?: readonly QuantConfig[];
  /** The allocator plug-ins method names resolve to (default: the built-ins). */
  readonly allocators?: readonly AllocatorPlugin[];
  /**
   * Where the statistics come from: a directory (`statsDir`), else computed on the calibration text and cached,
   * measured with the run's quantizer (its fnorm errors, its activation errors).
   */
  readonly statistics: Pick<StatisticsOptions, 'statsDir' | 'cacheDir' | 'calibrationPath' | 'calibrationName' | 'blocks' | 'threads' | 'metrics'>;
  /** The options the quantizer was configured with (part of the statistics' settings key). */
  readonly quantizerOptions?: Readonly<Record<string, OptionValue>>;
  /** Measure the statistics with another quantizer than the run's (e.g. HQQ's tables for a GPTQ run). */
  readonly statisticsQuantizer?: { readonly quantizer: Quantizer; readonly options: Readonly<Record<string, OptionValue>> };
  readonly onStatistics?: (step: StatisticsStep, done: number, total: number) => void;
  /** Called once the statistics are resolved, with where they came from. */
  readonly onStatisticsReady?: (source: string) => void;
  /** Called once the model is validated and its output directory locked (before the statistics). */
  readonly onOpened?: () => void;
  /**
   * Allocate for a shipped format: its ladders (`plan.configs`, or `plan.stops` for uniform and the boosts) and, for
   * the knapsack allocators, its bytes: the embedding units become units of the allocation (measured at their own
   * ladders) and the whole file must fit `target` (without one, `budget` bits per weight in the paper's accounting
   * over the format's ladder). The checkpoint then holds the embedding units the allocation quantized.
   */
  readonly shipped?: { readonly plan: FormatPlan; readonly target?: FileTarget };
  /**
   * Correct the allocation by measurement when the method's plug-in can (kld's `refine`), on the statistics'
   * calibration (text, blocks of 512 tokens) with the statistics' quantizer; the corrected allocation is quantized
   * only when its measured KLD is not above the first one's. The callbacks tell the plan before it starts, each
   * measured allocation, and the result. Absent: the first allocation is quantized, nothing measured.
   */
  readonly refine?: {
    readonly onPlan?: (plan: RefinePlan) => void;
    readonly onRound?: (round: RefinementRound) => void;
  };
}

export interface AllocatedQuantizeResult {
  readonly report: QuantizeModelReport;
  readonly allocation: Allocation;
  /** With `shipped`: the exact bytes of the file the allocation makes (the format's cost model), and of uniform's. */
  readonly shippedBytes: number | null;
  readonly uniformShippedBytes: number | null;
  /** HQQ uniform at the budget when it is a stop of the ladder (the baseline of extra memory). */
  readonly uniform: Allocation | undefined;
  /** Paper memory over `uniform`, percent; null without a baseline. */
  readonly extraMemoryPercent: number | null;
  /** Where the statistics came from. */
  readonly statistics: string;
  /** With `refine` and a method that corrects by measurement: the measured KLD of its first and corrected allocations. */
  readonly refinement: RefinementReport | null;
}

/** Tokens per calibration block of the statistics (and of the correction by measurement, on their calibration). */
const STATISTICS_SEQLEN = 512;

/**
 * `layerquant quantize --method <allocator> --budget <bpp>`: the statistics the method reads (none for uniform),
 * the allocation, then every matrix quantized at its config into one checkpoint.
 */
export async function quantizeAllocated(options: AllocatedQuantizeOptions): Promise<AllocatedQuantizeResult> {
  const allocators = options.allocators ?? ALLOCATOR_PLUGINS;
  const { method, shipped } = options;
  // Under a format the stop allocators take its native stops, the knapsacks its whole ladder and its bytes.
  const format = shipped ? formatAllocationSettings(method, shipped.plan, { ...(options.configs ? { configs: options.configs } : {}), budget: options.budget, ...(shipped.target ? { target: shipped.target } : {}) }, allocators) : undefined;
  const knapsack = format?.knapsack ?? false;
  const configs = format ? format.configs : options.configs;
  const target = format?.target;
  const budget = format ? format.budget : options.budget;
  if (!format) checkMethodBudget(method, budget, configs, allocators);
  const seed = options.seed ?? 42;
  return withOutputDirectory(options.modelDir, options.outDir, async (model) => {
    options.onOpened?.();
    const matrices = modelMatrixParams(model.config);
    const { stats, source } = await ensureStatistics({
      modelDir: options.modelDir,
      ...options.statistics,
      needs: tablesNeededBy([method], allocators),
      matrices,
      seqlen: STATISTICS_SEQLEN,
      quantizer: options.statisticsQuantizer ?? { quantizer: options.quantizer, options: options.quantizerOptions ?? {} },
      ...(configs ? { configs } : {}),
      ...(shipped && knapsack ? { embeddingConfigs: shipped.plan.embeddingConfigs } : {}),
      // modules the format stores at fewer configs (GGUF's k-quants in rows of 256) are measured at their own ladders
      ...(shipped && knapsack && Object.keys(shipped.plan.moduleConfigs).length > 0 ? { moduleConfigs: shipped.plan.moduleConfigs } : {}),
      ...(options.onStatistics ? { onStep: options.onStatistics } : {}),
    });
    options.onStatisticsReady?.(source);
    // The tables must cover this model whole (a table cut at a layer boundary would allocate only part of it).
    validateStats(stats, { matrices, name: options.modelDir });
    const size = shipped && knapsack ? shippedSizeBudget(shipped.plan, matricesOf(stats), shipped.target) : undefined;
    const context = { budget, seed, ...(configs ? { configs } : {}), ...(size ? { size } : {}) };
    // A size allocation offers the embedding units the plan's ladder only (not every config the tables hold).
    const planned = shipped && knapsack ? statisticsForPlan(stats, shipped.plan) : stats;
    let allocation = allocateMethod(method, planned, context, allocators);
    let refinement: RefinementReport | null = null;
    if (options.refine && methodRefines(method, allocators)) {
      // The measurer holds the float model's layers and distributions: closed before the quantization starts.
      const session = await openRefineSession(options.modelDir, (options.statisticsQuantizer ?? { quantizer: options.quantizer }).quantizer, {
        calibrationPath: options.statistics.calibrationPath,
        calibrationName: options.statistics.calibrationName,
        blocks: options.statistics.blocks,
        seqlen: STATISTICS_SEQLEN,
        ...(options.statistics.threads ? { threads: options.statistics.threads } : {}),
        ...(options.workers === undefined ? {} : { workers: options.workers }),
      });
      try {
        const refined = await refineAllocation(method, allocation, planned, context, session, { allocators, ...options.refine });
        allocation = refined.allocation;
        refinement = refined.refinement;
      } finally {
        await session.close();
      }
    }
    const uniform = target ? undefined : uniformBaseline(stats, { budget, ...(configs ? { configs } : {}) });
    const byKey = new Map<string, QuantConfig | null>(allocation.matrices.map((m) => [m.key, m.config]));
    // A calibrated quantizer reads the same calibration text as the statistics (their --calib and --blocks).
    const calibrationText = { calibrationPath: options.statistics.calibrationPath, calibrationName: options.statistics.calibrationName, blocks: options.statistics.blocks, ...(options.statistics.threads ? { threads: options.statistics.threads } : {}), ...options.calibration };
    const report = await withQuantizerCalibration(options.modelDir, options.quantizer, calibrationText, (calibration) => quantizeModel({
      modelDir: options.modelDir,
      outDir: options.outDir,
      quantizer: options.quantizer,
      // The embedding units an allocation for a format did not choose a config for stay float.
      configFor: (key, unit) => {
        const config = byKey.get(key);
        if (config === undefined && !isLinearModule(unit.module)) return null;
        if (config === undefined) throw new InvalidOptionError('--stats', `the statistics have no row for matrix ${key}; they were made for another model`);
        return config;
      },
      ...(shipped ? { embeddingUnits: true } : {}),
      method: method.id,
      allocation,
      ...(options.scaleDtype ? { scaleDtype: options.scaleDtype } : {}),
      ...(options.workers === undefined ? {} : { workers: options.workers }),
      options: {
        method: method.id,
        budget,
        statistics: source,
        ...options.record,
        ...(method.options.seed !== undefined ? { seed: allocation.options.seed ?? seed } : {}),
        ...(configs ? { configs: configs.map(configName) } : {}),
        ...(shipped ? { format: shipped.plan.cost.format, ...(shipped.target ? { target: shipped.target } : {}) } : {}),
      },
      ...(calibration ? { calibration } : {}),
      ...(options.onPlan ? { onPlan: options.onPlan } : {}),
      ...(options.onProgress ? { onProgress: options.onProgress } : {}),
    }));
    return {
      report,
      allocation,
      uniform,
      extraMemoryPercent: uniform ? extraMemoryPercent(allocation, uniform) : null,
      statistics: source,
      refinement,
      shippedBytes: shipped ? shippedBytes(shipped.plan.cost, allocation.matrices) : null,
      uniformShippedBytes: shipped && uniform ? shippedBytes(shipped.plan.cost, uniform.matrices) : null,
    };
  });
}

/**
 * A quantized model written in a shipped format (`quantize --format onnx|gguf`): `quantize` writes a checkpoint into
 * a temporary directory beside `out` (either mode above), which is exported to `out` (a directory for ONNX, a .gguf
 * file) and removed.
 */
export async function exportQuantized<T>(
  out: string,
  request: ExportRequest,
  quantizers: PluginRegistries['quantizers'] | undefined,
  quantize: (checkpointDir: string) => Promise<T>,
): Promise<{ readonly quantized: T; readonly export: ExportResult }> {
  const checkpointDir = temporaryPath(out);
  try {
    const quantized = await quantize(checkpointDir);
    const report = await exportModel(checkpointDir, out, request, quantizers);
    return { quantized, export: report };
  } finally {
    await rm(checkpointDir, { recursive: true, force: true });
  }
}
