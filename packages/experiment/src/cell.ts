import { allocateMethod, describeMethodOptions, extraMemoryPercent, uniformBaseline, type AllocatorPlugin, type MethodSpec, type ModelStats } from '@layerquant/allocators';
import { isLinearModule, matrixOfTensorName, matrixTensorName, type Allocation, type DecoderConfig, type QuantConfig, type Quantizer } from '@layerquant/core';
import { hasLogits, klDivergence, perplexity, type KldBaseReader } from '@layerquant/perplexity';
import { hqqQuantizer, modelMemory } from '@layerquant/quantizers';
import { defaultWorkerCount, quantizeModel } from '@layerquant/quantizers/node';
import { openModel, type Checkpoint } from '@layerquant/tensor-io';
import {
  exportQuantized,
  exportedBytes,
  openAllocationModel,
  openEvaluationModel,
  quantizeAllocated,
  refineAllocation,
  shippedSize,
  targetBytes,
  withQuantizerCalibration,
  type AllocatedQuantizeOptions,
  type EvaluationModel,
  type EvaluationOptions,
  type ExportRequest,
  type FileTarget,
  type FormatPlan,
  type PluginRegistries,
  type QuantizerCalibrationOptions,
  type RefinePlan,
  type RefineSession,
  type RefinementReport,
  type ShippedSize,
} from '@layerquant/pipeline';
import type { RefinementRound } from '@layerquant/allocators';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { cellKld, type CellRefinement, type ExperimentRow } from './report.js';

/**
 * One cell of the experiment grid, computed by one function for both the in-process run and a queue worker:
 * allocate from the statistics, quantize every linear matrix with the grid's quantizer (HQQ unless --quantizer) and
 * measure the perplexity of the packed-weight model (the graph `layerquant export` writes), so a cell holds the
 * quantized model, never float32 copies; weights are streamed from the checkpoint matrix by matrix. A quantizer
 * whose codes MatMulNBits cannot hold (no packedLayout 'affine') runs on its dequantized weights. A calibrated
 * quantizer (GPTQ) quantizes layer by layer on the calibration blocks into a temporary checkpoint, evaluated as
 * written and removed. In a grid of shipped files (`experiment --target-format onnx|gguf`) a cell's budget is a
 * target size of the file: the cell allocates to that file's bytes, writes the file `quantize --format` writes (into a
 * temporary directory, removed after) and measures the file itself (a .gguf in llama.cpp, an ONNX export in
 * onnxruntime), so its row is what a user who ships that file gets.
 */

/** A cell: the unquantized model, or a method at a budget. `key` names its settings (plan.ts; @layerquant/pipeline's settingsKey). */
export type CellSpec =
  | { readonly key: string; readonly kind: 'fp' }
  | { readonly key: string; readonly kind: 'method'; readonly method: MethodSpec; readonly budget: number };

export interface CellResult {
  readonly key: string;
  /** The row, with the per-window NLL the paired bootstrap reads (`windowNll`, `windowWeights`). */
  readonly row: ExperimentRow;
}

/** What every cell of a grid shares. */
export interface CellContext {
  readonly modelName: string;
  /** Needed by method cells (not by fp). */
  readonly stats?: ModelStats;
  readonly ids: readonly number[];
  readonly seqlen: number;
  readonly maxTokens?: number;
  readonly seed?: number;
  /** The config ladder the allocators choose from (default: the paper's 12). */
  readonly configs?: readonly QuantConfig[];
  /** The allocator plug-ins method names resolve to (the command's registry, --plugin's included; default built-ins). */
  readonly allocators?: readonly AllocatorPlugin[];
  /** The quantizer of every matrix (`experiment --quantizer`, a --plugin's included; default HQQ). */
  readonly quantizer?: Quantizer;
  /** The calibration text of a calibrated quantizer's layer pass (GPTQ, BAQ); needed by method cells with one. */
  readonly calibration?: QuantizerCalibrationOptions;
  /**
   * The unquantized model's logits on the grid's windows (`experiment --kld`): each cell also measures its KL
   * divergence from them in the same run as its perplexity.
   */
  readonly kldBase?: KldBaseReader;
  /** A grid of shipped files (`experiment --target-format`): its method cells write and measure the file (ShippedCells). */
  readonly shipped?: ShippedCells;
  /**
   * `experiment --refine`: the measurer (model and statistics' calibration) the cells of a method that corrects its
   * allocation by measurement (kld) refine on, and what to tell of it (the plan, each measured allocation, the result).
   */
  readonly refine?: {
    readonly session: RefineSession;
    readonly onPlan?: (cell: string, plan: RefinePlan) => void;
    readonly onRound?: (cell: string, round: RefinementRound) => void;
    readonly onDone?: (cell: string, report: RefinementReport) => void;
  };
}

/**
 * The cells of a grid of shipped files: the format (its export request, as `quantize --format` takes it), its plan (exact
 * bytes, native ladders), what a cell's budget measures (the file's MiB, or its bits per linear weight) and the
 * statistics' directory each cell's quantization reads (the grid's, measured at the plan's ladders).
 */
export interface ShippedCells {
  readonly request: ExportRequest;
  readonly plan: FormatPlan;
  readonly unit: ShippedUnit;
  /** The grid's statistics (their directory, measured at the plan's ladders) and their calibration text. */
  readonly statistics: AllocatedQuantizeOptions['statistics'];
  /** The registry a checkpoint's quantizer is read back through by the export (a --plugin's included). */
  readonly quantizers?: PluginRegistries['quantizers'];
}

/** What the budgets of a grid of shipped files measure: the file's size, or its bits per linear weight. */
export type ShippedUnit = 'MiB' | 'bits per weight';

/** A cell's budget as the file target it is in a grid of shipped files. */
export function shippedTarget(budget: number, unit: ShippedUnit): FileTarget {
  return unit === 'MiB' ? { sizeMiB: budget } : { bitsPerWeight: budget };
}

export function cellLabel(cell: CellSpec): string {
  return cell.kind === 'fp' ? 'fp' : `${cell.method.id} @ ${cell.budget}`;
}

/** The checkpoint the cells of a grid read (each cell builds its own model from it, then releases it). */
export interface CellSession {
  readonly modelDir: string;
  readonly checkpoint: Checkpoint;
  readonly config: DecoderConfig;
  /** Threads, and the memory the fp cell's float32 weights may take before it streams layer by layer. */
  readonly evaluation: EvaluationOptions;
  close(): Promise<void>;
}

export async function openCellSession(modelDir: string, threads?: number, maxMemoryBytes?: number): Promise<CellSession> {
  // config.json checked against the tensors (the one validation every command runs) before any cell.
  const { config, checkpoint } = await openModel(modelDir);
  return {
    modelDir,
    checkpoint,
    config,
    evaluation: { ...(threads ? { threads } : {}), ...(maxMemoryBytes === undefined ? {} : { maxMemoryBytes }) },
    close: () => checkpoint.close(),
  };
}

/**
 * Computes one cell on a model of its own (the packed-weight model of its allocation, matrices the allocation
 * leaves in float read from the checkpoint), so the result never depends on which cells the session ran before.
 */
export async function computeCell(
  session: CellSession,
  cell: CellSpec,
  context: CellContext,
  onWindow?: (done: number, total: number) => void,
): Promise<CellResult> {
  if (cell.kind === 'method' && context.shipped) return computeShippedCell(session, cell, context, context.shipped, onWindow);
  const { checkpoint } = session;
  const started = performance.now();
  const linear = checkpoint.tensors.filter((t) => matrixOfTensorName(t.name) !== undefined);
  let allocation: Allocation | undefined;
  let opened: EvaluationModel;
  let quantizedDir: string | undefined;
  let refinement: CellRefinement | undefined;
  if (cell.kind === 'method') {
    if (!context.stats) throw new TypeError(`cell ${cellLabel(cell)} needs statistics`);
    // Between stops, uniform and the boosts run at the highest stop below the budget (never over it).
    const allocationContext = { budget: cell.budget, seed: context.seed ?? 42, floorToStop: true, ...(context.configs ? { configs: context.configs } : {}) };
    allocation = allocateMethod(cell.method, context.stats, allocationContext, context.allocators);
    if (context.refine) {
      const label = cellLabel(cell);
      const { onPlan, onRound, onDone } = context.refine;
      const refined = await refineAllocation(cell.method, allocation, context.stats, allocationContext, context.refine.session, {
        ...(context.allocators ? { allocators: context.allocators } : {}),
        ...(onPlan ? { onPlan: (plan: RefinePlan) => onPlan(label, plan) } : {}),
        ...(onRound ? { onRound: (round: RefinementRound) => onRound(label, round) } : {}),
      });
      allocation = refined.allocation;
      if (refined.refinement) {
        const r = refined.refinement;
        refinement = {
          additiveKld: r.additiveKld,
          refinedKld: r.refinedKld,
          kept: r.kept,
          heldOut: r.heldOut ? { blocks: r.heldOut.blocks, additiveKld: r.heldOut.additiveKld, refinedKld: r.heldOut.refinedKld } : null,
          changed: r.changed,
          measured: r.rounds.length,
          stopped: r.stopped,
        };
        onDone?.(label, r);
      }
    }
    const configs = new Map<string, QuantConfig | null>(allocation.matrices.map((m) => [matrixTensorName(m.layer, m.module), m.config]));
    const quantizer = context.quantizer ?? hqqQuantizer;
    if (quantizer.calibration) {
      quantizedDir = await mkdtemp(join(tmpdir(), 'layerquant-cell-'));
      const outDir = quantizedDir;
      await withQuantizerCalibration(session.modelDir, quantizer, context.calibration, (calibration) =>
        quantizeModel({ modelDir: session.modelDir, outDir, quantizer, configFor: (_, m) => configs.get(m.name) ?? null, method: cell.method.id, workers: defaultWorkerCount(), ...(calibration ? { calibration } : {}) }),
      );
      opened = await openEvaluationModel(outDir, { ...session.evaluation, quantizers: [quantizer] });
    } else {
      opened = await openAllocationModel(checkpoint, session.config, (name) => configs.get(name) ?? null, quantizer, session.evaluation);
    }
  } else {
    opened = await openEvaluationModel(session.modelDir, session.evaluation);
  }
  let measured: CellMeasurement;
  try {
    measured = await measureCell(opened, cell, context, onWindow);
  } finally {
    await opened.dispose();
    if (quantizedDir) await rm(quantizedDir, { recursive: true, force: true });
  }
  const { result, kldFields } = measured;
  let row: ExperimentRow;
  if (!allocation || cell.kind === 'fp') {
    const params = linear.reduce((s, t) => s + t.shape.reduce((a, b) => a * b, 1), 0);
    const bytes = linear.reduce((s, t) => s + t.byteLength, 0);
    row = {
      model: context.modelName, method: 'fp', options: `${linear[0]?.dtype ?? 'F32'} weights, fp32 compute`, budget: null,
      bpp: (8 * bytes) / params, memoryMB: bytes / 2 ** 20, packedBytes: bytes, extraMemoryPercent: Number.NaN, ppl: result.ppl,
      seconds: (performance.now() - started) / 1000,
      windowNll: result.windowNll,
      windowWeights: result.windowWeights,
      ...kldFields,
    };
  } else {
    row = {
      model: context.modelName,
      method: cell.method.id,
      quantizer: (context.quantizer ?? hqqQuantizer).id,
      options: [describeMethodOptions(cell.method, context.allocators), allocation.budget !== cell.budget ? `at stop ${allocation.budget}` : ''].filter(Boolean).join(' '),
      budget: cell.budget,
      bpp: allocation.totals.bpp,
      memoryMB: allocation.totals.memoryMB,
      packedBytes: linearPackedBytes(checkpoint, allocation),
      extraMemoryPercent: extraMemoryPercent(allocation, uniformBaseline(context.stats!, { budget: cell.budget, floorToStop: true, ...(context.configs ? { configs: context.configs } : {}) })),
      ppl: result.ppl,
      seconds: (performance.now() - started) / 1000,
      windowNll: result.windowNll,
      windowWeights: result.windowWeights,
      ...kldFields,
      ...(refinement ? { refinement } : {}),
    };
  }
  return { key: cell.key, row };
}

interface CellMeasurement {
  readonly result: Awaited<ReturnType<typeof perplexity>>;
  /** The row's KLD fields (`kld`, `windowKld`, `windowKldCount`), with a KLD base; else none. */
  readonly kldFields: Pick<ExperimentRow, 'kld' | 'windowKld' | 'windowKldCount'>;
}

/** Bytes of the linear matrices of an allocation as layerquant packs them (codes, scales, zeros; embedding units not counted). */
function linearPackedBytes(checkpoint: Checkpoint, allocation: Allocation): number {
  const shapes = new Map(checkpoint.tensors.map((t) => [t.name, t.shape]));
  const linear = allocation.matrices.filter((m) => isLinearModule(m.module));
  return modelMemory(linear.map((m) => ({ shape: shapes.get(matrixTensorName(m.layer, m.module)) as unknown as [number, number], config: m.config }))).packedBytes;
}

/** The perplexity of a cell's model on the grid's windows and, with a KLD base, its KL divergence in the same run. */
async function measureCell(opened: EvaluationModel, cell: CellSpec, context: CellContext, onWindow?: (done: number, total: number) => void): Promise<CellMeasurement> {
  const options = {
    seqlen: context.seqlen,
    ...(context.maxTokens === undefined ? {} : { maxTokens: context.maxTokens }),
    ...(onWindow ? { onProgress: (done: number, total: number, unit: 'windows' | 'layers') => { if (unit === 'windows') onWindow(done, total); } } : {}),
  };
  if (!context.kldBase) return { result: await perplexity(opened.model, context.ids, options), kldFields: {} };
  if (!hasLogits(opened.model)) throw new TypeError(`cell ${cellLabel(cell)}: its model (${opened.kind}) gives no logits for a KL divergence`);
  // One run gives both: the perplexity is exactly what perplexity() gives the same model.
  const measured = await klDivergence(opened.model, context.kldBase, context.ids, options);
  return { result: measured.perplexity, kldFields: { kld: cellKld(measured.statistics), windowKld: measured.windows.kld, windowKldCount: measured.windows.count } };
}

/**
 * A method cell of a grid of shipped files: `quantize --method <m> --format <f> --target-size <budget>` into a temporary
 * directory (the allocation spends the file's bytes, the embeddings units of it), then the written file measured as
 * `eval` measures it. The row records the file's bytes on disk beside the cost model's prediction and the target.
 */
async function computeShippedCell(
  session: CellSession,
  cell: Extract<CellSpec, { kind: 'method' }>,
  context: CellContext,
  shipped: ShippedCells,
  onWindow?: (done: number, total: number) => void,
): Promise<CellResult> {
  // The statistics are read by quantizeAllocated from the grid's directory (shipped.statistics), as `quantize --stats` reads them.
  const started = performance.now();
  const quantizer = context.quantizer ?? hqqQuantizer;
  const dir = await mkdtemp(join(tmpdir(), 'layerquant-cell-'));
  try {
    const file = join(dir, shipped.request.format === 'gguf' ? 'model.gguf' : 'model');
    const { quantized, export: written } = await exportQuantized(file, shipped.request, shipped.quantizers, (checkpointDir) =>
      quantizeAllocated({
        modelDir: session.modelDir,
        outDir: checkpointDir,
        quantizer,
        method: cell.method,
        budget: Number.NaN,
        seed: context.seed ?? 42,
        ...(context.allocators ? { allocators: context.allocators } : {}),
        statistics: shipped.statistics,
        shipped: { plan: shipped.plan, target: shippedTarget(cell.budget, shipped.unit) },
        workers: defaultWorkerCount(),
        ...(context.calibration ? { calibration: context.calibration } : {}),
      }),
    );
    const opened = await openEvaluationModel(file, { ...session.evaluation, quantizers: [quantizer] });
    let measured: CellMeasurement;
    try {
      measured = await measureCell(opened, cell, context, onWindow);
    } finally {
      await opened.dispose();
    }
    const { allocation } = quantized;
    const size: ShippedSize = shippedSize(shipped.plan.cost.format, exportedBytes(written), shipped.plan.linearParams, {
      ...(quantized.shippedBytes === null ? {} : { predictedBytes: quantized.shippedBytes }),
      targetBytes: targetBytes(shippedTarget(cell.budget, shipped.unit), shipped.plan).bytes,
    });
    const { result, kldFields } = measured;
    const row: ExperimentRow = {
      model: context.modelName,
      method: cell.method.id,
      quantizer: quantizer.id,
      options: describeMethodOptions(cell.method, context.allocators),
      budget: cell.budget,
      bpp: allocation.totals.bpp,
      memoryMB: allocation.totals.memoryMB,
      packedBytes: linearPackedBytes(session.checkpoint, allocation),
      // no uniform baseline at a file size: uniform allocates at the format's stops
      extraMemoryPercent: Number.NaN,
      ppl: result.ppl,
      seconds: (performance.now() - started) / 1000,
      windowNll: result.windowNll,
      windowWeights: result.windowWeights,
      shipped: size,
      ...kldFields,
    };
    return { key: cell.key, row };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
