import type { ModelStats } from '@layerquant/allocators';
import { matrixOfTensorName, matrixTensorName, type Allocation, type QuantConfig } from '@layerquant/core';
import { perplexity, type NllModel } from '@layerquant/perplexity';
import { hqqQuantizer, modelMemory } from '@layerquant/quantizers';
import { loadDecoderConfig, openCheckpoint } from '@layerquant/tensor-io';
import { openAllocationModel, openEvaluationModel, type EvaluationModel } from '../evaluation-model.js';
import { allocateMethod, describeOptions, extraMemoryPercent, uniformBaseline } from './allocate-method.js';
import type { MethodSpec } from './grid.js';
import type { ExperimentRow } from './report.js';

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
  readonly threads?: number;
  /** Memory the fp row's float32 weights may take in one session before it streams layer by layer (bytes). */
  readonly maxMemoryBytes?: number;
  /** Rows already computed (a resumed run): cells with the same method and budget are not run again. */
  readonly done?: readonly ExperimentRow[];
  readonly onEvent?: (event: ExperimentEvent) => void;
  /** Called after every cell with all rows so far (to save progress). */
  readonly onRows?: (rows: readonly ExperimentRow[]) => Promise<void>;
}

/**
 * The paper's grid: for each budget and method, allocate from the statistics, quantize every matrix with HQQ and
 * measure the perplexity of the packed-weight model (the graph `layerquant export` writes), so a cell holds the
 * quantized model, never float32 copies; weights are streamed from the checkpoint matrix by matrix.
 */
export async function runExperiment(options: ExperimentOptions): Promise<ExperimentRow[]> {
  const config = await loadDecoderConfig(options.modelDir);
  const checkpoint = await openCheckpoint(options.modelDir);
  const rows: ExperimentRow[] = [...(options.done ?? [])];
  const shapes = new Map(checkpoint.tensors.map((t) => [t.name, t.shape]));
  const memoryOf = (allocation: Allocation) =>
    modelMemory(allocation.matrices.map((m) => ({ shape: shapes.get(matrixTensorName(m.layer, m.module)) as unknown as [number, number], config: m.config })));
  const evaluate = async (model: NllModel, cell: number, cells: number, label: string) =>
    perplexity(model, options.ids, {
      seqlen: options.seqlen,
      ...(options.maxTokens === undefined ? {} : { maxTokens: options.maxTokens }),
      onProgress: (done, total) => options.onEvent?.({ kind: 'window', cell, cells, label, done, total }),
    });
  const runtime = {
    ...(options.threads ? { threads: options.threads } : {}),
    ...(options.maxMemoryBytes === undefined ? {} : { maxMemoryBytes: options.maxMemoryBytes }),
  };
  const measure = async (open: () => Promise<EvaluationModel>, cell: number, cells: number, label: string) => {
    const opened = await open();
    try {
      return await evaluate(opened.model, cell, cells, label);
    } finally {
      await opened.dispose();
    }
  };
  try {
    const cells = options.budgets.length * options.methods.length + (options.includeFloat ? 1 : 0);
    let cell = 0;
    const uniformOf = new Map<number, Allocation | undefined>();
    const isDone = (method: string, budget: number | null) => rows.some((r) => r.method === method && r.budget === budget);

    if (options.includeFloat) {
      cell++;
      if (!isDone('fp', null)) {
        options.onEvent?.({ kind: 'cell-start', cell, cells, label: 'fp (unquantized)' });
        const started = performance.now();
        const result = await measure(() => openEvaluationModel(options.modelDir, runtime), cell, cells, 'fp');
        const linear = checkpoint.tensors.filter((t) => matrixOfTensorName(t.name) !== undefined);
        const params = linear.reduce((s, t) => s + t.shape.reduce((a, b) => a * b, 1), 0);
        const bytes = linear.reduce((s, t) => s + t.byteLength, 0);
        const bits = (8 * bytes) / params;
        const row: ExperimentRow = {
          model: options.modelName, method: 'fp', options: `${linear[0]?.dtype ?? 'F32'} weights, fp32 compute`, budget: null,
          bpp: bits, memoryMB: bytes / 2 ** 20, packedBytes: bytes, extraMemoryPercent: Number.NaN, ppl: result.ppl,
          seconds: (performance.now() - started) / 1000,
        };
        rows.push(row);
        options.onEvent?.({ kind: 'cell-done', cell, cells, label: 'fp', row });
        await options.onRows?.(rows);
      }
    }
    for (const budget of options.budgets) {
      for (const method of options.methods) {
        cell++;
        if (isDone(method.id, budget)) continue;
        const label = `${method.id} @ ${budget}`;
        options.onEvent?.({ kind: 'cell-start', cell, cells, label });
        const started = performance.now();
        const allocation = allocateMethod(method, options.stats, budget, options.seed);
        if (!uniformOf.has(budget)) uniformOf.set(budget, uniformBaseline(options.stats, budget));
        const uniform = uniformOf.get(budget);
        const configs = new Map<string, QuantConfig | null>(allocation.matrices.map((m) => [matrixTensorName(m.layer, m.module), m.config]));
        const result = await measure(() => openAllocationModel(checkpoint, config, (name) => configs.get(name) ?? null, hqqQuantizer, runtime), cell, cells, label);
        const memory = memoryOf(allocation);
        const row: ExperimentRow = {
          model: options.modelName,
          method: method.id,
          options: describeOptions(method),
          budget,
          bpp: allocation.totals.bpp,
          memoryMB: allocation.totals.memoryMB,
          packedBytes: memory.packedBytes,
          extraMemoryPercent: extraMemoryPercent(allocation, uniform),
          ppl: result.ppl,
          seconds: (performance.now() - started) / 1000,
        };
        rows.push(row);
        options.onEvent?.({ kind: 'cell-done', cell, cells, label, row });
        await options.onRows?.(rows);
      }
    }
  } finally {
    await checkpoint.close();
  }
  return rows;
}
