import type { AllocatorPlugin } from '@layerquant/allocators';
import type { ModelStats } from '@layerquant/allocators';
import { matrixOfTensorName, matrixTensorName, type Allocation, type QuantConfig, type Quantizer } from '@layerquant/core';
import { perplexity } from '@layerquant/perplexity';
import { hqqQuantizer, modelMemory } from '@layerquant/quantizers';
import { loadDecoderModel, type DecoderModel } from '@layerquant/runtime';
import { loadDecoderConfig, openCheckpoint, type Checkpoint } from '@layerquant/tensor-io';
import { allocateMethod, describeOptions, extraMemoryPercent, uniformBaseline } from './allocate-method.js';
import type { MethodSpec } from './grid.js';
import type { ExperimentRow } from './report.js';

/**
 * One cell of the experiment grid, computed by one function for both the in-process run and a queue worker:
 * allocate from the statistics, quantize every linear matrix with the grid's quantizer (HQQ unless --quantizer), swap the dequantized weights into a loaded
 * model and measure perplexity.
 */

/** A cell: the unquantized model, or a method at a budget. `key` names its settings (see keys.ts). */
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
}

export function cellLabel(cell: CellSpec): string {
  return cell.kind === 'fp' ? 'fp' : `${cell.method.id} @ ${cell.budget}`;
}

/** Dequantized weights of every matrix an allocation quantizes, read one matrix at a time from the checkpoint. */
export async function dequantizedOverrides(checkpoint: Checkpoint, allocation: Allocation, quantizer: Quantizer = hqqQuantizer): Promise<Map<string, Float32Array>> {
  const overrides = new Map<string, Float32Array>();
  for (const m of allocation.matrices) {
    if (!m.config) continue;
    const name = matrixTensorName(m.layer, m.module);
    const weight = await checkpoint.read(name);
    overrides.set(name, quantizer.dequantize(quantizer.quantize(weight, m.config)));
  }
  return overrides;
}

/** A checkpoint and one loaded model whose weights each cell replaces; reused across the cells of a grid. */
export interface CellSession {
  readonly checkpoint: Checkpoint;
  readonly model: DecoderModel;
  close(): Promise<void>;
}

export async function openCellSession(modelDir: string, threads?: number): Promise<CellSession> {
  const config = await loadDecoderConfig(modelDir);
  const checkpoint = await openCheckpoint(modelDir);
  try {
    const model = await loadDecoderModel(checkpoint, config, threads ? { threads } : {});
    return {
      checkpoint,
      model,
      async close() {
        await model.dispose();
        await checkpoint.close();
      },
    };
  } catch (error) {
    await checkpoint.close();
    throw error;
  }
}

/**
 * Computes one cell. Every linear matrix is set (quantized, or the checkpoint's own where the allocation leaves it
 * in float), so the result never depends on which cells the session ran before.
 */
export async function computeCell(
  session: CellSession,
  cell: CellSpec,
  context: CellContext,
  onWindow?: (done: number, total: number) => void,
): Promise<CellResult> {
  const { checkpoint, model } = session;
  const started = performance.now();
  const linear = checkpoint.tensors.filter((t) => matrixOfTensorName(t.name) !== undefined);
  let allocation: Allocation | undefined;
  const overrides = new Map<string, Float32Array>();
  if (cell.kind === 'method') {
    if (!context.stats) throw new TypeError(`cell ${cellLabel(cell)} needs statistics`);
    // Between stops, uniform and the boosts run at the highest stop below the budget (never over it).
    allocation = allocateMethod(cell.method, context.stats, cell.budget, context.seed, context.configs, context.allocators, true);
    for (const [name, data] of await dequantizedOverrides(checkpoint, allocation, context.quantizer)) overrides.set(name, data);
  }
  for (const t of linear) if (!overrides.has(t.name)) overrides.set(t.name, (await checkpoint.read(t.name)).data);
  await model.setWeights(overrides);
  overrides.clear();
  const result = await perplexity(model, context.ids, {
    seqlen: context.seqlen,
    ...(context.maxTokens === undefined ? {} : { maxTokens: context.maxTokens }),
    ...(onWindow ? { onProgress: onWindow } : {}),
  });
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
    };
  } else {
    const shapes = new Map(checkpoint.tensors.map((t) => [t.name, t.shape]));
    const memory = modelMemory(allocation.matrices.map((m) => ({ shape: shapes.get(matrixTensorName(m.layer, m.module)) as unknown as [number, number], config: m.config })));
    row = {
      model: context.modelName,
      method: cell.method.id,
      quantizer: (context.quantizer ?? hqqQuantizer).id,
      options: [describeOptions(cell.method, context.allocators), allocation.budget !== cell.budget ? `at stop ${allocation.budget}` : ''].filter(Boolean).join(' '),
      budget: cell.budget,
      bpp: allocation.totals.bpp,
      memoryMB: allocation.totals.memoryMB,
      packedBytes: memory.packedBytes,
      extraMemoryPercent: extraMemoryPercent(allocation, uniformBaseline(context.stats!, cell.budget, context.configs, true)),
      ppl: result.ppl,
      seconds: (performance.now() - started) / 1000,
      windowNll: result.windowNll,
      windowWeights: result.windowWeights,
    };
  }
  return { key: cell.key, row };
}
