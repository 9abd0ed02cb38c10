import { basename, join, resolve } from 'node:path';
import { freemem } from 'node:os';
import { InvalidOptionError, LayerquantError } from '@layerquant/core';
import { createKernelPool, defaultWorkerCount, type KernelPool } from '@layerquant/quantizers/node';
import { loadDecoderBlocks } from '@layerquant/runtime';
import { tableFile } from '@layerquant/stats';
import { loadTokenizer, openModel, writeFileSet, writeTextAtomic } from '@layerquant/tensor-io';
import { checkMetricList, measureMetricsOn, type MetricResults, type MetricsRunSettings } from './metric-run.js';
import type { MetricPlugin } from './metrics.js';

export type { MetricPlan, MetricResults } from './metric-run.js';

export interface MeasureMetricsOptions extends MetricsRunSettings {
  /** onnxruntime intra-op threads. */
  readonly threads?: number;
  /** Worker threads for every quantization, the activation metrics' and the weight metrics' (default: one per core; 1 = the calling thread). */
  readonly workers?: number;
  /** Name in tables that record the model (default: the directory name). */
  readonly modelName?: string;
}

/** A metric whose table cannot be written (a plug-in without `format`). */
export class MetricFormatError extends LayerquantError {
  constructor(metric: MetricPlugin) {
    super('METRIC_FORMAT', `metric "${metric.id}" has no format(table): its ${metric.table} table cannot be written; give the plug-in a format function returning CSV text`);
  }
}

/**
 * Measures any list of metric plug-ins (an app's registry: the built-ins and `--plugin` modules') on a model
 * directory: measureMetricsOn (the one measurement, browser-safe) on the directory's checkpoint, tokenizer and decoder
 * blocks, with a pool of kernel worker threads and the machine's free memory.
 */
export async function measureMetrics(modelDir: string, metrics: readonly MetricPlugin[], options: MeasureMetricsOptions): Promise<MetricResults> {
  checkMetricList(metrics, options);
  // config.json checked against the tensors (the one validation every command runs) before any long step.
  const { config, checkpoint } = await openModel(modelDir);
  const workers = options.workers ?? defaultWorkerCount();
  // One pool of kernel workers for the run's quantizations.
  let pool: KernelPool | undefined;
  try {
    if (!Number.isInteger(workers) || workers < 1) throw new InvalidOptionError('workers', `${workers} must be a positive integer`);
    pool = metrics.length > 0 && workers > 1 ? createKernelPool(workers) : undefined;
    return await measureMetricsOn(
      {
        name: options.modelName ?? basename(resolve(modelDir)),
        config,
        checkpoint,
        tokenizer: () => loadTokenizer(modelDir),
        loadBlocks: () => loadDecoderBlocks(checkpoint, config, options.threads ? { threads: options.threads } : {}),
      },
      metrics,
      { ...options, ...(pool ? { pool } : {}), availableMemoryBytes: freemem() },
    );
  } finally {
    await pool?.close();
    await checkpoint.close();
  }
}

/** The file a metric's table is written to: the authors' name for the built-in tables, else `<table>.csv`. */
export function metricFile(metric: MetricPlugin): string {
  return tableFile(metric.table);
}

/**
 * Writes the measured tables, each through its metric's `format`, all swapped in at once (tensor-io's
 * writeFileSet): never a new table beside one of an interrupted earlier run. Returns the paths written.
 */
export async function writeMetricTables(dir: string, metrics: readonly MetricPlugin[], tables: Readonly<Record<string, unknown>>): Promise<string[]> {
  const written = metrics.filter((m) => tables[m.table] !== undefined);
  for (const m of written) if (!m.format) throw new MetricFormatError(m);
  await writeFileSet(dir, async (staging) => {
    for (const m of written) await writeTextAtomic(join(staging, metricFile(m)), m.format!(tables[m.table]));
  });
  return written.map((m) => join(dir, metricFile(m)));
}
