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

export interface ExperimentEvent {
  readonly kind: 'cell-start' | 'cell-done' | 'window';
  readonly cell: number;
  readonly cells: number;
  readonly label: string;
  readonly done?: number;
  readonly total?: number;
  readonly row?: ExperimentRow;
}

export interface ExperimentOptions {
  readonly modelDir: string;
  readonly modelName: string;
  readonly stats: ModelStats;
  readonly methods: readonly MethodSpec[];
  readonly budgets: readonly number[];
  readonly ids: readonly number[];
  readonly seqlen: number;
  readonly maxTokens?: number;
  readonly includeFloat: boolean;
  readonly seed?: number;
  /** The config ladder the allocators choose from (default: the paper's 12). */
  readonly configs?: readonly QuantConfig[];
  readonly threads?: number;
  /** The allocator plug-ins the method names resolve to (default: the built-ins). */
  readonly allocators?: readonly AllocatorPlugin[];
  /** The quantizer of every matrix (default: HQQ with upstream settings). */
  readonly quantizer?: Quantizer;
  /** Rows already computed (a resumed run): cells with the same method and budget are not run again. */
  readonly done?: readonly ExperimentRow[];
  readonly onEvent?: (event: ExperimentEvent) => void;
  /** Called after every cell with all rows so far (to save progress). */
  readonly onRows?: (rows: readonly ExperimentRow[]) => Promise<void>;
}

/**
 * The paper's grid: for each budget and method, allocate from the statistics, quantize every matrix with HQQ, swap
 * the dequantized weights into one loaded model, and measure perplexity. One model session is loaded for the whole
 * grid; weights are streamed from the checkpoint matrix by matrix.
 */
export async function runExperiment(options: ExperimentOptions): Promise<ExperimentRow[]> {
  const config = await loadDecoderConfig(options.modelDir);
  const checkpoint = await openCheckpoint(options.modelDir);
  const rows: ExperimentRow[] = [...(options.done ?? [])];
  const shapes = new Map(checkpoint.tensors.map((t) => [t.name, t.shape]));
  const memoryOf = (allocation: Allocation) =>
    modelMemory(allocation.matrices.map((m) => ({ shape: shapes.get(matrixTensorName(m.layer, m.module)) as unknown as [number, number], config: m.config })));
  const evaluate = async (model: DecoderModel, cell: number, cells: number, label: string) =>
    perplexity(model, options.ids, {
      seqlen: options.seqlen,
      ...(options.maxTokens === undefined ? {} : { maxTokens: options.maxTokens }),
      onProgress: (done, total) => options.onEvent?.({ kind: 'window', cell, cells, label, done, total }),
    });
  let model: DecoderModel | undefined;
  try {
    model = await loadDecoderModel(checkpoint, config, options.threads ? { threads: options.threads } : {});
    const cells = options.budgets.length * options.methods.length + (options.includeFloat ? 1 : 0);
    let cell = 0;
    const uniformOf = new Map<number, Allocation | undefined>();
    const isDone = (method: string, budget: number | null) => rows.some((r) => r.method === method && r.budget === budget);

    if (options.includeFloat) {
      cell++;
      if (!isDone('fp', null)) {
        options.onEvent?.({ kind: 'cell-start', cell, cells, label: 'fp (unquantized)' });
        const started = performance.now();
        const result = await evaluate(model, cell, cells, 'fp');
        const linear = checkpoint.tensors.filter((t) => matrixOfTensorName(t.name) !== undefined);
        const params = linear.reduce((s, t) => s + t.shape.reduce((a, b) => a * b, 1), 0);
        const bytes = linear.reduce((s, t) => s + t.byteLength, 0);
        const bits = (8 * bytes) / params;
        const row: ExperimentRow = {
          model: options.modelName, method: 'fp', options: `${linear[0]?.dtype ?? 'F32'} weights, fp32 compute`, budget: null,
          bpp: bits, memoryMB: bytes / 2 ** 20, packedBytes: bytes, extraMemoryPercent: Number.NaN, ppl: result.ppl,
          seconds: (performance.now() - started) / 1000,
          windowNll: result.windowNll,
          windowWeights: result.windowWeights,
        };
        rows.push(row);
        options.onEvent?.({ kind: 'cell-done', cell, cells, label: 'fp', row });
        await options.onRows?.(rows);
      }
    }
    // The unquantized weights are re-read from the checkpoint for every cell: the model holds the current cell's.
    for (const budget of options.budgets) {
      for (const method of options.methods) {
        cell++;
        if (isDone(method.id, budget)) continue;
        const label = `${method.id} @ ${budget}`;
        options.onEvent?.({ kind: 'cell-start', cell, cells, label });
        const started = performance.now();
        // Between stops, uniform and the boosts run at the highest stop below the budget (never over it).
        const allocation = allocateMethod(method, options.stats, budget, options.seed, options.configs, options.allocators, true);
        if (!uniformOf.has(budget)) uniformOf.set(budget, uniformBaseline(options.stats, budget, options.configs, true));
        const uniform = uniformOf.get(budget);
        await model.setWeights(await dequantizedOverrides(checkpoint, allocation, options.quantizer));
        const result = await evaluate(model, cell, cells, label);
        const memory = memoryOf(allocation);
        const row: ExperimentRow = {
          model: options.modelName,
          method: method.id,
          options: [describeOptions(method, options.allocators), allocation.budget !== budget ? `at stop ${allocation.budget}` : ''].filter(Boolean).join(' '),
          budget,
          bpp: allocation.totals.bpp,
          memoryMB: allocation.totals.memoryMB,
          packedBytes: memory.packedBytes,
          extraMemoryPercent: extraMemoryPercent(allocation, uniform),
          ppl: result.ppl,
          seconds: (performance.now() - started) / 1000,
          windowNll: result.windowNll,
          windowWeights: result.windowWeights,
        };
        rows.push(row);
        options.onEvent?.({ kind: 'cell-done', cell, cells, label, row });
        await options.onRows?.(rows);
      }
    }
  } finally {
    await model?.dispose();
    await checkpoint.close();
  }
  return rows;
}
