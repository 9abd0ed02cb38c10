import { allocateMethod, describeMethodOptions, extraMemoryPercent, uniformBaseline, type AllocatorPlugin, type MethodSpec, type ModelStats } from '@layerquant/allocators';
import { matrixOfTensorName, matrixTensorName, type Allocation, type DecoderConfig, type QuantConfig, type Quantizer } from '@layerquant/core';
import { hasLogits, klDivergence, perplexity, type KldBaseReader } from '@layerquant/perplexity';
import { hqqQuantizer, modelMemory } from '@layerquant/quantizers';
import { defaultWorkerCount, quantizeModel } from '@layerquant/quantizers/node';
import { openModel, type Checkpoint } from '@layerquant/tensor-io';
import { openAllocationModel, openEvaluationModel, refineAllocation, withQuantizerCalibration, type EvaluationModel, type EvaluationOptions, type QuantizerCalibrationOptions, type RefinePlan, type RefineSession, type RefinementReport } from '@layerquant/pipeline';
import type { RefinementRound } from '@layerquant/allocators';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { cellKld, type CellKld, type CellRefinement, type ExperimentRow } from './report.js';

/**
 * One cell of the experiment grid, computed by one function for both the in-process run and a queue worker:
 * allocate from the statistics, quantize every linear matrix with the grid's quantizer (HQQ unless --quantizer) and
 * measure the perplexity of the packed-weight model (the graph `layerquant export` writes), so a cell holds the
 * quantized model, never float32 copies; weights are streamed from the checkpoint matrix by matrix. A quantizer
 * whose codes MatMulNBits cannot hold (no packedLayout 'affine') runs on its dequantized weights. A calibrated
 * quantizer (GPTQ) quantizes layer by layer on the calibration blocks into a temporary checkpoint, evaluated as
 * written and removed.
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
        refinement = { additiveKld: r.additiveKld, refinedKld: r.refinedKld, kept: r.kept, changed: r.changed, measured: r.rounds.length, stopped: r.stopped };
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
  let result: Awaited<ReturnType<typeof perplexity>>;
  let kld: { statistics: CellKld; windowKld: readonly number[]; windowKldCount: readonly number[] } | undefined;
  try {
    const options = {
      seqlen: context.seqlen,
      ...(context.maxTokens === undefined ? {} : { maxTokens: context.maxTokens }),
      ...(onWindow ? { onProgress: (done: number, total: number, unit: 'windows' | 'layers') => { if (unit === 'windows') onWindow(done, total); } } : {}),
    };
    if (context.kldBase) {
      if (!hasLogits(opened.model)) throw new TypeError(`cell ${cellLabel(cell)}: its model (${opened.kind}) gives no logits for a KL divergence`);
      // One run gives both: the perplexity is exactly what perplexity() gives the same model.
      const measured = await klDivergence(opened.model, context.kldBase, context.ids, options);
      result = measured.perplexity;
      kld = { statistics: cellKld(measured.statistics), windowKld: measured.windows.kld, windowKldCount: measured.windows.count };
    } else {
      result = await perplexity(opened.model, context.ids, options);
    }
  } finally {
    await opened.dispose();
    if (quantizedDir) await rm(quantizedDir, { recursive: true, force: true });
  }
  const kldFields = kld ? { kld: kld.statistics, windowKld: kld.windowKld, windowKldCount: kld.windowKldCount } : {};
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
    const shapes = new Map(checkpoint.tensors.map((t) => [t.name, t.shape]));
    const memory = modelMemory(allocation.matrices.map((m) => ({ shape: shapes.get(matrixTensorName(m.layer, m.module)) as unknown as [number, number], config: m.config })));
    row = {
      model: context.modelName,
      method: cell.method.id,
      quantizer: (context.quantizer ?? hqqQuantizer).id,
      options: [describeMethodOptions(cell.method, context.allocators), allocation.budget !== cell.budget ? `at stop ${allocation.budget}` : ''].filter(Boolean).join(' '),
      budget: cell.budget,
      bpp: allocation.totals.bpp,
      memoryMB: allocation.totals.memoryMB,
      packedBytes: memory.packedBytes,
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
